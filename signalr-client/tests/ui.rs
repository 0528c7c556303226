//! What must not compile, and the message a user sees instead (trybuild compares the compiler's
//! output with `tests/ui/*.stderr`; `TRYBUILD=overwrite` rewrites them after a toolchain change).

#[test]
fn misuses_do_not_compile() {
    trybuild::TestCases::new().compile_fail("tests/ui/*.rs");
}
