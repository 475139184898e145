//! The binary lookup refuses what would break later in confusing ways.

use fleet_testkit::Error;
use fleet_testkit::binaries::{Tool, check_etcd_version, ensure};
use fleet_testkit::process::write_script;

#[test]
fn etcd_older_than_3_5_13_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let etcd = dir.path().join("etcd");
    // What Debian bookworm's etcd-server prints.
    write_script(
        &etcd,
        "#!/bin/sh\necho 'etcd Version: 3.4.23'\necho 'Git SHA: Not provided'\n",
    )
    .expect("write script");
    let err = check_etcd_version(&etcd).expect_err("3.4.23 is too old");
    assert!(matches!(err, Error::EtcdVersion { .. }), "{err}");
    let message = err.to_string();
    assert!(
        message.contains("3.4.23") && message.contains("3.5.13"),
        "{message}"
    );
}

#[test]
fn pinned_etcd_is_new_enough() {
    let etcd = ensure(Tool::Etcd).expect("etcd available");
    check_etcd_version(&etcd).expect("pinned etcd passes the check");
}
