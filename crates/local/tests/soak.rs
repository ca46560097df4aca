//! A scaled-down soak (a few seconds in a debug build): the same pipeline, load shape and
//! checks as `bench/soak.sh`, so a correctness regression under sustained load fails CI,
//! not just the long run. Timings are printed, never asserted.

use streamwatch_local::soak::{SoakOptions, run};

#[tokio::test]
async fn a_short_soak_is_exact() {
    let opts = SoakOptions {
        turbines: 60,
        minutes: 8,
        shards: 3,
        accidents_every_minutes: 4,
        seed: 11,
    };
    let report = run(&opts, |line| eprintln!("{line}"))
        .await
        .expect("soak runs");
    eprintln!("{report:?}");
    assert_eq!(report.readings, 60 * 8 * 60);
    assert_eq!(
        report.windows_expected,
        60 * 8,
        "every turbine-minute window checked"
    );
    assert!(
        report.window_mismatches.is_empty(),
        "{:?}",
        report.window_mismatches
    );
    assert_eq!(report.windows_checked, report.windows_expected);
    assert!(
        report.firing_windows_expected > 0,
        "the gusts make windows fire"
    );
    assert_eq!(report.firing_alerts, report.firing_windows_expected);
    assert_eq!(report.firing_alerts_missing_or_extra, 0);
    assert_eq!(report.accident_loops, 2);
    assert_eq!(report.accidents_selected_expected, 2 * 139);
    assert_eq!(report.accidents_counted, report.accidents_selected_expected);
    assert_eq!(report.event_alerts, report.event_alerts_expected);
    assert!(
        report.change_records >= report.readings,
        "duplicates are delivered too"
    );
    assert!(
        report.memory_end.rss_kb > 0,
        "RSS read from /proc/self/status"
    );
    assert!(report.exact());
}
