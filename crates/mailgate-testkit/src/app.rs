//! The HTTP TestApp (written by the server work).
