//! Empty and small partitions cost bytes, not mebibytes: a shuffle into 5,000 reduce partitions
//! of a few records each stays under 100 MB of peak resident memory. Alone in its test binary,
//! so the process's peak is this test's.

use discnn_engine::testing::Add;
use discnn_engine::Context;

#[test]
fn five_thousand_small_reduce_partitions_stay_under_100_mb() {
    let ctx = Context::local(2).unwrap();
    let pairs: Vec<(i64, i64)> = (0..20_000).map(|i| (i, 1)).collect();
    let counts = ctx.parallelize(pairs, 40).unwrap().reduce_by_key(Add, 5000);
    let out = counts.collect().unwrap();
    assert_eq!(out.len(), 20_000);
    assert!(out.iter().all(|&(_, c)| c == 1));
    let peak = discnn_engine::process::status_bytes("VmHWM");
    assert!(peak > 0, "VmHWM is readable");
    eprintln!("peak RSS {} MB", peak >> 20);
    assert!(
        peak < 100 << 20,
        "peak RSS {} MB for 5,000 small partitions",
        peak >> 20
    );
}
