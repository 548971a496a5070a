//! Recovery from arbitrary file contents: the input becomes a partition directory, opened after
//! an unclean stop and after a clean one, then read (`strand::fuzzing::segment_recovery`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let tmp = tempfile::Builder::new()
        .prefix("strand-fuzz")
        .tempdir_in(std::env::var_os("FUZZ_TMP").unwrap_or_else(|| "/dev/shm".into()))
        .or_else(|_| tempfile::tempdir())
        .unwrap();
    strand::fuzzing::segment_recovery(tmp.path(), data).unwrap();
});
