//! Request and response bodies (`XxxIn` / `XxxOut`) and the conversion of incoming bodies into
//! validated core types. Only the server knows these shapes.

pub mod emails;
pub mod environments;
pub mod events;
pub mod settings;
pub mod suppressions;
pub mod templates;

pub use emails::{EmailOut, SendEmailIn, SendEmailOut};
pub use environments::{CreatedKeyOut, EnvironmentIn, EnvironmentOut, KeyIn, KeyOut, ListOut};
pub use events::{EventListOut, EventOut};
