//! Field tests: the client and the test server through the real programs deployments put
//! between them (HAProxy with and without cookie affinity and terminating mutual TLS,
//! tinyproxy as a forward proxy with and without credentials, instances on a Redis that
//! fail over), each started on a free port and
//! stopped however the test ends. A missing program skips locally (saying how to install it)
//! and fails under `CI=true`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::missing_panics_doc)]

mod haproxy;
mod scaleout;
mod support;
mod tinyproxy;
mod tls;
