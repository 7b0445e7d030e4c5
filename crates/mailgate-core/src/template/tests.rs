use serde_json::{json, Map, Value};

use super::*;

fn data(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap()
}

fn tpl(subject: &str, html: &str, text: &str) -> Template {
    Template {
        subject: Some(subject.into()),
        html: Some(html.into()),
        text: Some(text.into()),
        ..Template::default()
    }
}

#[test]
fn both_spacings_work_and_html_only_is_escaped() {
    let t = tpl(
        "Code {{code}}",
        "<p>{{ code }} {{name}}</p>",
        "{{ code }} {{name}}",
    );
    let r = t
        .render(&data(
            json!({"code": "123456", "name": "<script>alert(1)</script>"}),
        ))
        .unwrap();
    assert_eq!(r.subject.as_deref(), Some("Code 123456"));
    assert_eq!(
        r.html.as_deref(),
        Some("<p>123456 &lt;script&gt;alert(1)&lt;&#x2f;script&gt;</p>")
    );
    assert_eq!(r.text.as_deref(), Some("123456 <script>alert(1)</script>"));
}

#[test]
fn a_missing_variable_is_an_error() {
    let t = tpl("Code", "<p>{{ code }}</p>", "x");
    let e = t.render(&Map::new()).unwrap_err();
    assert_eq!((e.code, e.field.as_str()), ("missing_variable", "html"));
}

#[test]
fn a_bad_template_is_refused_with_line_and_column() {
    let t = tpl("ok", "<p>\n  {{ code </p>", "x");
    let e = t.validate().unwrap_err();
    assert_eq!((e.code, e.field.as_str()), ("invalid_template", "html"));
    assert!(e.message.contains("line 2"), "{}", e.message);
    assert!(e.message.contains("column"), "{}", e.message);
}

#[test]
fn fuel_runs_out() {
    let t = tpl(
        "x",
        "{% for i in range(100000) %}{% for j in range(100000) %}.{% endfor %}{% endfor %}",
        "x",
    );
    t.validate().unwrap();
    let e = t.render(&Map::new()).unwrap_err();
    assert_eq!(e.code, "template_too_expensive");
}

/// Renders `text` on a thread of its own and gives up after 20 s, so that a regression fails
/// the test instead of hanging the suite.
fn render_text_within_deadline(text: &str) -> Result<Option<String>, FieldError> {
    let t = tpl("x", "<p>x</p>", text);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(t.render(&Map::new()).map(|r| r.text));
    });
    rx.recv_timeout(std::time::Duration::from_secs(20))
        .expect("the render did not finish: a repetition ran unbounded")
}

/// The fuzzer's hang (vendor/README.md): repeating an empty sequence stepped through every
/// repetition inside one instruction, where fuel is not counted.
#[test]
fn repeated_sequences_are_bounded() {
    let huge = "5555555555555555555";
    assert_eq!(
        render_text_within_deadline(&format!("{{{{ [] * {huge} }}}}")).unwrap(),
        Some("[]".into())
    );
    assert_eq!(
        render_text_within_deadline(&format!(
            "{{% for x in ([] * {huge}) * 5 * 4 %}}.{{% endfor %}}|{{{{ ([] * {huge}) | length }}}}"
        ))
        .unwrap(),
        Some("|0".into())
    );
    // Non-empty repetitions are bounded by their item count, nested ones too.
    for text in [
        format!("{{{{ [1] * {huge} }}}}"),
        "{{ ([1, 2] * 100000) * 100000 }}".to_owned(),
    ] {
        let e = render_text_within_deadline(&text).unwrap_err();
        assert_eq!(e.code, "template_render_failed", "{text}");
        assert!(e.message.contains("too large"), "{}", e.message);
    }
    assert_eq!(
        render_text_within_deadline("{{ ([1, 2] * 2) | join(',') }}").unwrap(),
        Some("1,2,1,2".into())
    );
}

#[test]
fn templates_need_a_subject_and_a_body() {
    let mut t = tpl("s", "h", "t");
    t.subject = None;
    assert_eq!(t.validate().unwrap_err().field, "subject");
    let t = Template {
        subject: Some("s".into()),
        ..Template::default()
    };
    assert_eq!(t.validate().unwrap_err().field, "html");
}

#[test]
fn every_builtin_renders_with_sample_data_and_without_the_code_fails() {
    for name in UsageType::WELL_KNOWN {
        let usage = UsageType::parse(name, "usage").unwrap();
        let t = builtin(&usage).unwrap();
        t.validate().unwrap();
        let r = t.render(&sample_data(&usage, &Map::new())).unwrap();
        assert!(r.subject.unwrap().starts_with("Example: "));
        assert!(r.html.unwrap().contains("<html lang=\"en\">"));
        assert!(t.render(&Map::new()).is_err(), "{name} needs code or link");
    }
}

#[test]
fn locales_parse_and_have_bases() {
    let l = Locale::parse("fr_ca", "locale").unwrap();
    assert_eq!(l.as_str(), "fr-CA");
    assert_eq!(l.base().unwrap().as_str(), "fr");
    assert!(Locale::parse("f", "locale").is_err());
    assert!(Locale::parse("en-", "locale").is_err());
    assert_eq!(
        resolve::locale_chain(Some(&l), &Locale::english())
            .iter()
            .map(Locale::as_str)
            .collect::<Vec<_>>(),
        ["fr-CA", "fr", "en"]
    );
}

#[test]
fn address_lists_split_outside_quotes() {
    assert_eq!(
        split_addresses("\"Doe, Ann\" <ann@x.example>, bob@x.example,"),
        ["\"Doe, Ann\" <ann@x.example>", "bob@x.example"]
    );
}
