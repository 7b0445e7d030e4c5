//! A small `multipart/form-data` encoder (RFC 7578) for Mailgun's send request: text fields,
//! repeated as often as needed, and file parts with raw bytes. File names are written as UTF-8
//! inside a quoted string (as browsers and Mailgun's own Go SDK do), never percent-encoded.

use sha2::{Digest, Sha256};

/// One part's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value {
    /// A text field.
    Text(String),
    /// A file: its name, MIME type and raw bytes.
    File {
        filename: String,
        content_type: String,
        bytes: Vec<u8>,
    },
}

/// An ordered list of form fields; names may repeat.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Form {
    fields: Vec<(String, Value)>,
}

impl Form {
    /// Appends a text field.
    pub(crate) fn text(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.fields.push((name.into(), Value::Text(value.into())));
    }

    /// Appends a file part.
    pub(crate) fn file(&mut self, name: &str, filename: &str, content_type: &str, bytes: Vec<u8>) {
        self.fields.push((
            name.to_owned(),
            Value::File {
                filename: filename.to_owned(),
                content_type: content_type.to_owned(),
                bytes,
            },
        ));
    }

    /// Removes every field called `name`.
    pub(crate) fn remove(&mut self, name: &str) {
        self.fields.retain(|(n, _)| n != name);
    }

    /// The text values of the fields called `name`, in order.
    #[cfg(test)]
    pub(crate) fn texts(&self, name: &str) -> Vec<&str> {
        self.fields
            .iter()
            .filter(|(n, _)| n == name)
            .filter_map(|(_, v)| match v {
                Value::Text(t) => Some(t.as_str()),
                Value::File { .. } => None,
            })
            .collect()
    }

    /// Whether any field is called `name`.
    #[cfg(test)]
    pub(crate) fn has(&self, name: &str) -> bool {
        self.fields.iter().any(|(n, _)| n == name)
    }

    /// Encodes the form; returns the `Content-Type` header value and the body.
    pub(crate) fn encode(&self) -> (String, Vec<u8>) {
        let boundary = self.boundary();
        let mut body = Vec::new();
        for (name, value) in &self.fields {
            body.extend_from_slice(b"--");
            body.extend_from_slice(boundary.as_bytes());
            body.extend_from_slice(b"\r\nContent-Disposition: form-data; name=\"");
            body.extend_from_slice(quote(name).as_bytes());
            body.push(b'"');
            match value {
                Value::Text(text) => {
                    body.extend_from_slice(b"\r\n\r\n");
                    body.extend_from_slice(text.as_bytes());
                }
                Value::File {
                    filename,
                    content_type,
                    bytes,
                } => {
                    body.extend_from_slice(b"; filename=\"");
                    body.extend_from_slice(quote(filename).as_bytes());
                    body.extend_from_slice(b"\"\r\nContent-Type: ");
                    body.extend_from_slice(content_type_or_default(content_type).as_bytes());
                    body.extend_from_slice(b"\r\n\r\n");
                    body.extend_from_slice(bytes);
                }
            }
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(b"--");
        body.extend_from_slice(boundary.as_bytes());
        body.extend_from_slice(b"--\r\n");
        (format!("multipart/form-data; boundary={boundary}"), body)
    }

    /// A boundary derived from a hash of every part, so no part can contain it (short of a
    /// SHA-256 collision), and the same form always encodes to the same bytes.
    fn boundary(&self) -> String {
        let mut hash = Sha256::new();
        for (name, value) in &self.fields {
            hash.update(name.as_bytes());
            hash.update([0]);
            match value {
                Value::Text(t) => hash.update(t.as_bytes()),
                Value::File {
                    filename,
                    content_type,
                    bytes,
                } => {
                    hash.update(filename.as_bytes());
                    hash.update(content_type.as_bytes());
                    hash.update(bytes);
                }
            }
            hash.update([0]);
        }
        format!("mailgate-{}", hex::encode(&hash.finalize()[..16]))
    }
}

/// Escapes a name for a quoted-string: backslash and quote escaped, line breaks made spaces
/// (a header value cannot hold them).
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' | '"' => {
                out.push('\\');
                out.push(c);
            }
            '\r' | '\n' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// The part's MIME type if it is a plausible single-line `type/subtype`, else
/// `application/octet-stream`.
fn content_type_or_default(content_type: &str) -> &str {
    let plausible = content_type.contains('/')
        && content_type
            .bytes()
            .all(|b| (0x20..0x7f).contains(&b) && b != b'\r' && b != b'\n');
    if plausible {
        content_type
    } else {
        "application/octet-stream"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_fields_and_files() {
        let mut form = Form::default();
        form.text("to", "a@example.com");
        form.text("to", "b@example.com");
        form.file(
            "attachment",
            "Ré\"sumé.pdf",
            "application/pdf",
            b"%PDF".to_vec(),
        );
        let (content_type, body) = form.encode();
        let boundary = content_type
            .strip_prefix("multipart/form-data; boundary=")
            .unwrap();
        let body = String::from_utf8(body).unwrap();
        let expected = format!(
            "--{b}\r\nContent-Disposition: form-data; name=\"to\"\r\n\r\na@example.com\r\n\
             --{b}\r\nContent-Disposition: form-data; name=\"to\"\r\n\r\nb@example.com\r\n\
             --{b}\r\nContent-Disposition: form-data; name=\"attachment\"; filename=\"Ré\\\"sumé.pdf\"\r\n\
             Content-Type: application/pdf\r\n\r\n%PDF\r\n--{b}--\r\n",
            b = boundary
        );
        assert_eq!(body, expected);
        assert_eq!(form.encode().0, content_type, "deterministic");
    }

    #[test]
    fn refuses_header_injection_in_names_and_types() {
        assert_eq!(quote("a\r\nb\"c"), "a  b\\\"c");
        assert_eq!(
            content_type_or_default("text/plain\r\nX: y"),
            "application/octet-stream"
        );
        assert_eq!(content_type_or_default("image/png"), "image/png");
    }
}
