//! Marks a build made without a PostgreSQL test database (`APPEALFLOW_TEST_POSTGRES_URL`
//! unset), so the PostgreSQL half of the test suite is reported as ignored, with the
//! reason, instead of passing without having run.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(appealflow_no_postgres)");
    println!("cargo::rerun-if-env-changed=APPEALFLOW_TEST_POSTGRES_URL");
    println!("cargo::rerun-if-changed=build.rs");
    if std::env::var_os("APPEALFLOW_TEST_POSTGRES_URL").is_none_or(|v| v.is_empty()) {
        println!("cargo::rustc-cfg=appealflow_no_postgres");
    }
}
