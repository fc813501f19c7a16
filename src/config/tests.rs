use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, "test.toml")
}

#[test]
fn shipped_example_is_valid_and_means_what_it_says() {
    let c = parse(EXAMPLE).expect("packaging/leakwatch.toml must stay valid");
    assert_eq!(c.listen, "127.0.0.1:9717".parse().unwrap());
    assert_eq!(c.mode, crate::judge::Enforcement::Enforce);
    assert_eq!(c.interval, Duration::from_secs(5));
    assert_eq!(c.targets.len(), 1);
    let t = &c.targets[0];
    assert_eq!(t.name, "app");
    assert!(matches!(&t.selector, Selector::CmdlineRegex(r) if r.0.as_str() == "myapp --serve"));
    assert_eq!(t.judge, crate::judge::JudgeConfig::default());
    let close_wait = t
        .rules
        .iter()
        .find(|(s, _)| *s == Series::TcpCloseWait)
        .unwrap();
    assert_eq!(close_wait.1.max, Some(200.0));
    assert_eq!(close_wait.1.max_growth_per_s, Some(10.0 / 60.0));
    let heap = t.rules.iter().find(|(s, _)| *s == Series::Heap).unwrap();
    assert_eq!(heap.1.limit, Some(1024.0 * 1024.0 * 1024.0));
    let rule = |series| {
        t.rules
            .iter()
            .find(|(s, _)| *s == series)
            .unwrap()
            .1
            .clone()
    };
    assert_eq!(rule(Series::TcpStalled).max, Some(20.0));
    assert_eq!(rule(Series::TcpCloseWaitAged).max, Some(0.0));
    let sock = rule(Series::CgroupSock);
    assert_eq!(sock.limit, Some(512.0 * 1024.0 * 1024.0));
    assert_eq!(sock.exhaust_within, Some(Duration::from_secs(1800)));
}

#[test]
fn stall_after_is_a_judge_key_globally_and_per_target() {
    let c = parse(
        "[judge]\nstall_after = \"2s\"\n[[target]]\npid = 1\n[[target]]\npid = 2\nstall_after = \"5m\"\n",
    )
    .unwrap();
    assert_eq!(c.targets[0].judge.stall_after, Duration::from_secs(2));
    assert_eq!(c.targets[1].judge.stall_after, Duration::from_secs(300));
    assert_eq!(
        parse("[[target]]\npid = 1\n").unwrap().targets[0]
            .judge
            .stall_after,
        Duration::from_secs(60)
    );
    // tcp_stalled has no natural limit: exhaust_within needs `limit`.
    let e = parse("[[target]]\npid = 1\n[target.rules.tcp_stalled]\nexhaust_within = \"1h\"\n");
    assert!(e.unwrap_err().to_string().contains("no natural limit"));
}

#[test]
fn empty_file_is_all_defaults() {
    assert_eq!(parse("").unwrap(), Config::default());
}

#[test]
fn defaults_fill_series_without_rules() {
    let c = parse("[[target]]\npid = 7\n[target.rules.fds]\nmax = 100\n").unwrap();
    let rules = c.targets[0].effective_rules();
    let names: Vec<Series> = rules.iter().map(|(s, _)| *s).collect();
    assert_eq!(names, [Series::Fds, Series::CgroupMemory, Series::Threads]);
    assert_eq!(
        rules[0].1,
        Rule {
            max: Some(100.0),
            ..Rule::default()
        },
        "configured fds rule replaces the default"
    );
    assert_eq!(rules[1].1.max_ratio, Some(0.9));
    assert_eq!(rules[1].1.exhaust_within, Some(Duration::from_secs(1800)));
    assert_eq!(c.targets[0].name, "pid-7");
}

#[test]
fn per_target_judge_keys_override_global_ones() {
    let c = parse(
        "[judge]\nwarmup = \"5m\"\nfail_after = 4\n\
         [[target]]\nname = \"a\"\npid = 1\nfail_after = 2\n\
         [[target]]\nname = \"b\"\npid = 2\n",
    )
    .unwrap();
    assert_eq!(c.targets[0].judge.fail_after, 2);
    assert_eq!(c.targets[0].judge.warmup, Duration::from_secs(300));
    assert_eq!(c.targets[1].judge.fail_after, 4);
}

#[test]
fn name_alone_selects_by_comm() {
    let c = parse("[[target]]\nname = \"nginx\"\n").unwrap();
    assert_eq!(c.targets[0].selector, Selector::Name("nginx".into()));
    let c = parse("[[target]]\nname = \"web\"\nsystemd_unit = \"nginx.service\"\n").unwrap();
    assert_eq!(
        c.targets[0].selector,
        Selector::SystemdUnit("nginx.service".into())
    );
    assert_eq!(c.targets[0].name, "web");
}

/// Each broken file: (text, line, column, key, a phrase of the message).
#[test]
fn broken_configs_name_line_column_key_and_expectation() {
    let cases: &[(&str, usize, usize, &str, &str)] = &[
        (
            "interval = \"5 parsecs\"\n",
            1,
            12,
            "interval",
            "expected a duration",
        ),
        ("interval = 5\n", 1, 12, "interval", "string"),
        ("listen = \"nowhere\"\n", 1, 10, "listen", "address"),
        ("intervall = \"5s\"\n", 1, 1, "intervall", "unknown field"),
        (
            "[judge]\nusage_floor = 1.5\n",
            2,
            15,
            "judge.usage_floor",
            "ratio",
        ),
        ("[judge]\nfail_after = -1\n", 2, 14, "judge.fail_after", ""),
        (
            "[judge]\nwarmup = \"-5s\"\n",
            2,
            10,
            "judge.warmup",
            "duration",
        ),
        (
            "[judge]\non_missing = \"maybe\"\n",
            2,
            14,
            "judge.on_missing",
            "pass",
        ),
        (
            "[[target]]\npid = 1\ncmdline_regex = \"(\"\n",
            3,
            17,
            "target[0].cmdline_regex",
            "regex",
        ),
        (
            "[[target]]\npid = 1\n[target.rules.fdz]\nmax = 3\n",
            3,
            15,
            "target[0].rules.fdz",
            "unknown field",
        ),
        (
            "[[target]]\npid = 1\n[target.rules.fds]\nmax_growth = \"10\"\n",
            4,
            14,
            "target[0].rules.fds.max_growth",
            "rate",
        ),
        (
            "[[target]]\npid = 1\n[target.rules.fds]\nmax = \"3 apples\"\n",
            4,
            7,
            "target[0].rules.fds.max",
            "unit",
        ),
        (
            "\n[[target]]\npid = 1\nsystemd_unit = \"a\"\n",
            2,
            1,
            "target[0].systemd_unit",
            "exactly one selector",
        ),
        (
            "[[target]]\nwarmup = \"1m\"\n",
            1,
            1,
            "target[0].pid",
            "no selector",
        ),
        ("[[target]]\npid = -4\n", 1, 1, "target[0].pid", "above 0"),
        (
            "[[target]]\nname = \"a b\"\npid = 3\n",
            1,
            1,
            "target[0].name",
            "letters",
        ),
        (
            "[[target]]\npid = 1\n[target.rules.fds]\nlimit = 5\nmax = 1\n",
            1,
            1,
            "target[0].rules.fds.limit",
            "limit from the kernel",
        ),
        (
            "[[target]]\npid = 1\n[target.rules.tcp_close_wait]\nmax_ratio = 0.5\n",
            1,
            1,
            "target[0].rules.tcp_close_wait.max_ratio",
            "no natural limit",
        ),
        (
            "[[target]]\npid = 1\n[target.rules.rss]\n",
            1,
            1,
            "target[0].rules.rss",
            "at least one of",
        ),
        (
            "[[target]]\nname = \"x\"\npid = 1\n[[target]]\nname = \"x\"\npid = 2\n",
            4,
            1,
            "target[1].name",
            "unique",
        ),
        ("interval = \"10ms\"\n", 0, 0, "interval", "at least 100ms"),
        (
            "[judge]\nmin_span = \"20m\"\n",
            0,
            0,
            "judge.min_span",
            "longer than the window",
        ),
        ("[judge\n", 1, 7, "", "unclosed table"),
    ];
    for (text, line, col, key, phrase) in cases {
        let e = parse(text).expect_err(text);
        let shown = e.to_string();
        if *line > 0 {
            assert_eq!(
                (e.line, e.column),
                (Some(*line), Some(*col)),
                "{text:?}: {shown}"
            );
        }
        assert_eq!(e.key.as_deref().unwrap_or(""), *key, "{text:?}: {shown}");
        assert!(
            shown.contains(phrase),
            "{text:?}: {shown:?} should contain {phrase:?}"
        );
        assert!(shown.starts_with("test.toml"), "{shown}");
    }
}

#[test]
fn unreadable_file_is_an_error_naming_it() {
    let e = Config::load(Path::new("/nonexistent/leakwatch.toml")).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("/nonexistent/leakwatch.toml: cannot read"),
        "{e}"
    );
}

#[test]
fn the_example_actions_parse_when_uncommented() {
    // The commented [actions] block of the example, uncommented, is valid and means what
    // it says.
    let start = EXAMPLE
        .find("# [actions]\n")
        .expect("the example has [actions]");
    let block: String = EXAMPLE[start..]
        .lines()
        .map(|l| l.strip_prefix("# ").unwrap_or(""))
        .filter(|l| l.starts_with('[') || l.contains(" = "))
        .collect::<Vec<_>>()
        .join("\n");
    let c = parse(&format!("{block}\n[[target]]\npid = 1\n")).unwrap();
    let a = &c.targets[0].actions;
    assert_eq!(a, &c.actions);
    assert_eq!(a.cooldown, Duration::from_secs(600));
    assert_eq!(a.max_per_hour, 3);
    assert_eq!(a.observe, [crate::config::actions::Action::Bundle]);
    let b = a.bundle.as_ref().unwrap();
    assert_eq!(b.dir, std::path::Path::new("/var/lib/leakwatch/bundles"));
    assert_eq!(b.max_bytes, 50 * 1024 * 1024);
    assert_eq!(b.keep, 10);
    let s = a.signal.as_ref().unwrap();
    assert_eq!(s.signal.number, libc::SIGUSR2);
    assert_eq!(s.grace, Duration::ZERO);
    let e = a.exec.as_ref().unwrap();
    assert_eq!(e.argv, ["/usr/local/bin/on-leak", "--page"]);
    assert_eq!(e.timeout, Duration::from_secs(30));
    // Commented out, nothing fires.
    assert!(parse(EXAMPLE).unwrap().targets[0].actions.is_empty());
}

#[test]
fn target_actions_overlay_the_global_ones_key_by_key() {
    let c = parse(
        "[actions]\ncooldown = \"1m\"\n[actions.bundle]\ndir = \"/b\"\nkeep = 4\n\
         [[target]]\nname = \"a\"\npid = 1\n\
         [target.actions]\nmax_per_hour = 9\n[target.actions.bundle]\nkeep = 2\n\
         [target.actions.signal]\nsignal = 3\ngrace = \"5s\"\n\
         [[target]]\nname = \"b\"\npid = 2\n",
    )
    .unwrap();
    let a = &c.targets[0].actions;
    assert_eq!(a.cooldown, Duration::from_secs(60), "inherited");
    assert_eq!(a.max_per_hour, 9);
    let b = a.bundle.as_ref().unwrap();
    assert_eq!((b.dir.to_str().unwrap(), b.keep), ("/b", 2));
    assert_eq!(a.signal.as_ref().unwrap().signal.number, libc::SIGQUIT);
    assert_eq!(a.signal.as_ref().unwrap().grace, Duration::from_secs(5));
    let other = &c.targets[1].actions;
    assert_eq!(other.bundle.as_ref().unwrap().keep, 4);
    assert!(other.signal.is_none());
}

#[test]
fn bad_actions_name_the_key() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "[actions.signal]\nsignal = \"SIGNOPE\"\n",
            "actions.signal.signal",
            "unknown signal",
        ),
        (
            "[actions.signal]\ngrace = \"1s\"\n",
            "actions.signal.signal",
            "name the signal",
        ),
        (
            "[actions.exec]\nargv = []\n",
            "actions.exec.argv",
            "program",
        ),
        (
            "[actions.bundle]\ndir = \"rel\"\n",
            "actions.bundle.dir",
            "absolute",
        ),
        (
            "[actions.bundle]\nmax_bytes = \"1KiB\"\n",
            "actions.bundle.max_bytes",
            "16KiB",
        ),
        (
            "[actions.bundle]\nkeep = 0\n",
            "actions.bundle.keep",
            "at least 1",
        ),
        (
            "[actions]\nmax_per_hour = 0\n",
            "actions.max_per_hour",
            "at least 1",
        ),
        (
            "[actions]\ncooldwn = \"1m\"\n",
            "actions.cooldwn",
            "unknown field",
        ),
        (
            "[[target]]\npid = 1\n[target.actions.exec]\ntimeout = \"1s\"\n",
            "target[0].actions.exec.argv",
            "program",
        ),
    ];
    for (text, key, phrase) in cases {
        let e = parse(text).expect_err(text);
        assert_eq!(e.key.as_deref(), Some(*key), "{text}: {e}");
        assert!(e.message.contains(phrase), "{text}: {e}");
    }
}

#[test]
fn probe_listen_must_be_another_port() {
    let e = Config::parse(
        "listen = \"0.0.0.0:9717\"\nprobe_listen = \"0.0.0.0:9717\"\n",
        "t.toml",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("probe_listen"), "{e}");
    assert!(e.contains("the probe port must be another"), "{e}");
    let c = Config::parse(
        "listen = \"0.0.0.0:9717\"\nprobe_listen = \"0.0.0.0:9718\"\n",
        "t.toml",
    )
    .unwrap();
    assert_eq!(c.probe_listen, Some("0.0.0.0:9718".parse().unwrap()));
    // Port 0 on both: two ephemeral ports, no clash.
    assert!(super::probe_port_clash(
        "127.0.0.1:0".parse().unwrap(),
        Some("127.0.0.1:0".parse().unwrap())
    )
    .is_none());
}

#[test]
fn min_span_follows_a_window_set_alone() {
    // The default min_span is the whole window: a shorter window set alone takes it along
    // (at [judge] and per target), and an explicit min_span stays as set.
    let c = parse("[judge]\nwindow = \"4m\"\n[[target]]\nname = \"a\"\npid = 1\n").unwrap();
    assert_eq!(c.targets[0].judge.min_span, Duration::from_secs(240));
    let c = parse(
        "[judge]\nwindow = \"20m\"\nmin_span = \"5m\"\n[[target]]\nname = \"a\"\npid = 1\n\
         [[target]]\nname = \"b\"\npid = 2\nwindow = \"30m\"\n",
    )
    .unwrap();
    assert_eq!(c.targets[0].judge.min_span, Duration::from_secs(300));
    assert_eq!(c.targets[1].judge.min_span, Duration::from_secs(300));
    let c = parse("[[target]]\nname = \"a\"\npid = 1\nwindow = \"2m\"\n").unwrap();
    assert_eq!(c.targets[0].judge.min_span, Duration::from_secs(120));
}

#[test]
fn fleet_takes_a_count_or_a_percentage_of_replicas() {
    assert_eq!(parse("").unwrap().fleet, None);
    let f = parse("[fleet]\ngroup = \"api\"\n").unwrap().fleet.unwrap();
    assert_eq!((f.group.as_str(), f.max_concurrent), ("api", 1));
    assert_eq!(f.lease_duration, Duration::from_secs(15));
    let f = parse("[fleet]\ngroup = \"api\"\nmax_concurrent = \"25%\"\nreplicas = 9\n")
        .unwrap()
        .fleet
        .unwrap();
    assert_eq!(f.max_concurrent, 3);
    let f = parse(
        "[fleet]\ngroup = \"api\"\nmax_concurrent = 2\nidentity = \"pod-a\"\n\
         lease_duration = \"6s\"\nrenew_every = \"2s\"\nhealthy_for = \"10s\"\n",
    )
    .unwrap()
    .fleet
    .unwrap();
    assert_eq!(f.max_concurrent, 2);
    assert_eq!(f.identity.as_deref(), Some("pod-a"));
    assert_eq!(f.renew_every, Duration::from_secs(2));
}

#[test]
fn broken_fleet_sections_say_which_key_and_why() {
    let cases = [
        ("[fleet]\nmax_concurrent = 1\n", "fleet.group", "missing"),
        ("[fleet]\ngroup = \"API\"\n", "fleet.group", "a-z, 0-9"),
        (
            "[fleet]\ngroup = \"api\"\nmax_concurrent = 0\n",
            "fleet.max_concurrent",
            "1 to 100",
        ),
        (
            "[fleet]\ngroup = \"api\"\nmax_concurrent = \"25%\"\n",
            "fleet.max_concurrent",
            "set `replicas`",
        ),
        (
            "[fleet]\ngroup = \"api\"\nmax_concurrent = \"150%\"\nreplicas = 4\n",
            "fleet.max_concurrent",
            "percentage",
        ),
        (
            "[fleet]\ngroup = \"api\"\nlease_duration = \"5s\"\n",
            "fleet.lease_duration",
            "twice renew_every",
        ),
        (
            "[fleet]\ngroup = \"api\"\nmax_hold = \"30s\"\n",
            "fleet.max_hold",
            "healthy_for",
        ),
        (
            "[fleet]\ngroup = \"api\"\nslots = 2\n",
            "fleet",
            "unknown field",
        ),
    ];
    for (text, key, why) in cases {
        let e = parse(text).expect_err(text);
        let shown = e.to_string();
        assert!(
            e.key.as_deref().is_some_and(|k| k.starts_with(key)) && shown.contains(why),
            "{text}: {shown}"
        );
    }
}

#[test]
fn mode_is_enforce_by_default_observe_at_the_top_or_per_target() {
    use crate::config::actions::Action;
    use crate::judge::Enforcement;
    let c = parse("[[target]]\npid = 1\n").unwrap();
    assert_eq!(c.mode, Enforcement::Enforce);
    assert_eq!(c.targets[0].mode, Enforcement::Enforce);
    assert_eq!(c.targets[0].actions.observe, [Action::Bundle]);

    // The top level's mode is every target's, unless the target says otherwise.
    let c = parse(
        "mode = \"observe\"\n[[target]]\nname = \"a\"\npid = 1\n\
         [[target]]\nname = \"b\"\npid = 2\nmode = \"enforce\"\n",
    )
    .unwrap();
    assert_eq!(c.mode, Enforcement::Observe);
    let modes: Vec<Enforcement> = c.targets.iter().map(|t| t.mode).collect();
    assert_eq!(modes, [Enforcement::Observe, Enforcement::Enforce]);
    let c = parse("[[target]]\npid = 1\nmode = \"observe\"\n").unwrap();
    assert_eq!(
        (c.mode, c.targets[0].mode),
        (Enforcement::Enforce, Enforcement::Observe)
    );

    // [actions] observe: sorted, without repeats; a target's list replaces the global one.
    let c = parse(
        "[actions]\nobserve = [\"exec\", \"bundle\", \"exec\"]\n\
         [[target]]\nname = \"a\"\npid = 1\n\
         [[target]]\nname = \"b\"\npid = 2\n[target.actions]\nobserve = []\n",
    )
    .unwrap();
    assert_eq!(c.actions.observe, [Action::Bundle, Action::Exec]);
    assert_eq!(c.targets[0].actions.observe, [Action::Bundle, Action::Exec]);
    assert!(c.targets[1].actions.observe.is_empty());
}

#[test]
fn a_bad_mode_or_observe_action_names_the_key() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "mode = \"dry-run\"\n",
            "mode",
            "expected `enforce` or `observe`",
        ),
        ("mode = true\n", "mode", "wanted string"),
        (
            "[[target]]\npid = 1\nmode = \"Observe\"\n",
            "target[0].mode",
            "unknown variant",
        ),
        (
            "[actions]\nobserve = [\"restart\"]\n",
            "actions.observe[0]",
            "expected one of `bundle`, `signal`, `exec`",
        ),
        (
            "[actions]\nobserve = \"bundle\"\n",
            "actions.observe",
            "expected a sequence",
        ),
        (
            "[[target]]\npid = 1\n[target.actions]\nobserve = [\"bundle\", \"page\"]\n",
            "target[0].actions.observe[1]",
            "unknown variant",
        ),
    ];
    for (text, key, phrase) in cases {
        let e = parse(text).expect_err(text);
        assert_eq!(e.key.as_deref(), Some(*key), "{text}: {e}");
        assert!(e.message.contains(phrase), "{text}: {e}");
        assert!(e.line.is_some(), "{text}: {e}");
    }
}
