//! Launcher for a real SMTP server (aiosmtpd) on loopback; written by the SMTP work.
