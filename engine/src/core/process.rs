//! This process's memory, as Linux reports it: for benchmarks and for jobs that log their
//! footprint.

/// Bytes of a memory field of `/proc/self/status` (`VmRSS` resident now, `VmHWM` the peak);
/// 0 where the file or the field is missing.
pub fn status_bytes(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field)?.strip_prefix(':').map(str::to_owned))
        })
        .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

#[cfg(test)]
mod tests {
    #[test]
    fn resident_memory_is_reported_and_unknown_fields_are_zero() {
        let rss = super::status_bytes("VmRSS");
        assert!(rss > 0);
        // Read after: the peak so far covers what was resident before.
        assert!(super::status_bytes("VmHWM") >= rss);
        assert_eq!(super::status_bytes("NoSuchField"), 0);
    }
}
