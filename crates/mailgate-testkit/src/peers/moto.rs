//! Launcher for moto_server (SES v2) on loopback; written by the SES work.
