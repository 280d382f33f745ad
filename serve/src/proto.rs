//! E2B's envd messages and Connect services, generated from `spec/e2b/*.proto` by `build.rs`.
//! Nothing here is written by hand; the services' implementations are in `envd/`.

#![allow(
    clippy::all,
    missing_docs,
    unreachable_pub,
    rust_2018_idioms,
    reason = "generated code"
)]

connectrpc::include_generated!();
