//! `leakwatch backtest --svg DIR` draws what a person needs at a glance, and a real browser
//! shows it: Debian's chromium renders each SVG headless to a PNG of the SVG's size, which
//! is decoded here and must hold the series' blue line, the flip's red, and the dark text of
//! the time axis and the legend under the panels, not a blank page. A second load in
//! chromium measures every text the browser laid out (`getBBox` from a page that frames the
//! SVG): the document parses, the time ticks, the limit's label, the lead and the legend
//! are all there, inside the drawing, and no two tick labels or legend items overlap.
//! Hostile label values (markup, quotes, control characters) render as text.
//!
//! The README's picture, docs/backtest-example.svg, is the leaky instance of
//! `tests/backtest_prometheus.rs` (the same history, built here without Prometheus) and
//! must be what `render` draws today; regenerate it with
//! `LEAKWATCH_WRITE_BACKTEST_EXAMPLE=1 cargo test --test backtest_svg readme_example`.
//! `LEAKWATCH_SVG_SHOTS=DIR` keeps the screenshots there, to look at.
//!
//! Without chromium the browser tests say so and pass, unless `LEAKWATCH_REQUIRE_CHROMIUM=1`
//! (CI sets it, and `.ci/run` installs chromium).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::BIN;
use leakwatch::backtest::recording::RecordLine;
use leakwatch::backtest::render::{labels_text, rfc3339};
use leakwatch::backtest::{replay, svg, Setup, TargetHistory, TargetReport};
use leakwatch::judge::Series;

fn chromium() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("chromium"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        common::skip::skip(
            "LEAKWATCH_REQUIRE_CHROMIUM",
            "chromium is not installed (Debian package `chromium`)",
        );
    }
    found
}

/// A recording of 3 hours at 15 s: fds leaking 8/min from 300 to 1020 of 1024, the process
/// replaced after 2h30m.
fn recording(path: &Path) {
    let t0 = 1_800_000_000_000u64;
    let mut text = String::new();
    for i in 0..720u64 {
        let t = t0 + i * 15_000;
        let restarted = i >= 600;
        let fds = if restarted {
            120
        } else {
            (300 + 2 * i).min(1020)
        };
        let line = RecordLine {
            t,
            target: "api".into(),
            pid: if restarted { 2 } else { 1 },
            starttime: if restarted { 2000 } else { 1000 },
            started_ms: Some(if restarted {
                t0 + 600 * 15_000
            } else {
                t0 - 3_600_000
            }),
            values: [(Series::Fds, fds as f64)].into(),
            limits: [(Series::Fds, 1024.0)].into(),
        };
        text.push_str(&serde_json::to_string(&line).unwrap());
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
}

/// The `width="W" height="H"` of an SVG.
fn svg_size(svg: &str) -> (u32, u32) {
    let attr = |name: &str| -> u32 {
        let at = svg.find(&format!(" {name}=\"")).unwrap() + name.len() + 3;
        svg[at..].split('"').next().unwrap().parse().unwrap()
    };
    (attr("width"), attr("height"))
}

/// A decoded 8-bit RGB or RGBA PNG: width, height, and pixels as RGB.
fn decode_png(png: &[u8]) -> (u32, u32, Vec<[u8; 3]>) {
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "a PNG");
    let (mut pos, mut idat) = (8, Vec::new());
    let (mut w, mut h, mut channels) = (0, 0, 0);
    while pos + 8 <= png.len() {
        let len = u32::from_be_bytes(png[pos..pos + 4].try_into().unwrap()) as usize;
        let kind = &png[pos + 4..pos + 8];
        let data = &png[pos + 8..pos + 8 + len];
        match kind {
            b"IHDR" => {
                w = u32::from_be_bytes(data[0..4].try_into().unwrap());
                h = u32::from_be_bytes(data[4..8].try_into().unwrap());
                assert_eq!((data[8], data[12]), (8, 0), "8-bit, not interlaced");
                channels = match data[9] {
                    2 => 3,
                    6 => 4,
                    c => panic!("color type {c}"),
                };
            }
            b"IDAT" => idat.extend_from_slice(data),
            _ => {}
        }
        pos += 12 + len;
    }
    let raw = miniz_oxide::inflate::decompress_to_vec_zlib(&idat).expect("zlib");
    let stride = w as usize * channels;
    let mut prev = vec![0u8; stride];
    let mut pixels = Vec::with_capacity((w * h) as usize);
    for row in raw.chunks(stride + 1).take(h as usize) {
        let (filter, line) = (row[0], &row[1..]);
        let mut cur = vec![0u8; stride];
        for i in 0..stride {
            let a = if i >= channels { cur[i - channels] } else { 0 };
            let (b, c) = (prev[i], if i >= channels { prev[i - channels] } else { 0 });
            let predicted = match filter {
                0 => 0,
                1 => a,
                2 => b,
                3 => ((u16::from(a) + u16::from(b)) / 2) as u8,
                4 => paeth(a, b, c),
                f => panic!("filter {f}"),
            };
            cur[i] = line[i].wrapping_add(predicted);
        }
        pixels.extend(cur.chunks(channels).map(|p| [p[0], p[1], p[2]]));
        prev = cur;
    }
    (w, h, pixels)
}

fn paeth(a: u8, b: u8, c: u8) -> u8 {
    let p = i16::from(a) + i16::from(b) - i16::from(c);
    let (pa, pb, pc) = (
        (p - i16::from(a)).abs(),
        (p - i16::from(b)).abs(),
        (p - i16::from(c)).abs(),
    );
    if pa <= pb && pa <= pc {
        a
    } else if pb <= pc {
        b
    } else {
        c
    }
}

/// Run chromium headless on `svg` into `png`, bounded in time and killed by its pid.
/// Run chromium headless with `args` on `url`, its stdout into `stdout`, bounded in time
/// and killed by its pid.
fn run_chromium(chromium: &Path, profile: &Path, args: &[String], stdout: Stdio) {
    let mut child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromium");
    let deadline = Instant::now() + Duration::from_secs(180);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within 180 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A screenshot of `svg` at its size, decoded: (width, height, RGB pixels). Kept in
/// `$LEAKWATCH_SVG_SHOTS/NAME.png` when that is set.
fn screenshot(chromium: &Path, svg: &Path, size: (u32, u32)) -> (u32, u32, Vec<[u8; 3]>) {
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("shot.png");
    let args = [
        format!("--window-size={},{}", size.0, size.1),
        format!("--screenshot={}", png.display()),
        format!("file://{}", svg.display()),
    ];
    run_chromium(chromium, &dir.path().join("profile"), &args, Stdio::null());
    let bytes = std::fs::read(&png).expect("chromium wrote the screenshot");
    if let Some(keep) = std::env::var_os("LEAKWATCH_SVG_SHOTS") {
        let name = svg.file_stem().unwrap().to_string_lossy();
        std::fs::write(Path::new(&keep).join(format!("{name}.png")), &bytes).unwrap();
    }
    decode_png(&bytes)
}

/// A text chromium laid out: the class of it (or of its group), its box, its content.
#[derive(Debug, Clone)]
struct Laid {
    class: String,
    x: f64,
    y: f64,
    w: f64,
    h: f64,
    text: String,
}

/// A page that frames the SVG and, once it is loaded, writes each `<text>`'s `getBBox()`
/// into a `<pre>` (or `PARSEERROR`), for `--dump-dom` to print.
const MEASURE: &str = r#"<!doctype html><html><body><iframe id="f" src="SVG" width="W" height="H"></iframe>
<script>
window.addEventListener('load', () => {
  const doc = document.getElementById('f').contentDocument;
  const out = [];
  if (!doc || !doc.documentElement || doc.getElementsByTagName('parsererror').length) {
    out.push('PARSEERROR');
  } else {
    out.push('ROOT\t' + doc.documentElement.localName);
    for (const t of doc.querySelectorAll('text')) {
      const b = t.getBBox();
      const cls = t.getAttribute('class') || t.parentNode.getAttribute('class') || '';
      out.push([cls, b.x, b.y, b.width, b.height, encodeURIComponent(t.textContent)].join('\t'));
    }
  }
  const pre = document.createElement('pre');
  pre.id = 'boxes';
  pre.textContent = '\n' + out.join('\n') + '\n';
  document.body.appendChild(pre);
});
</script></body></html>
"#;

/// Every text of `svg` as chromium laid it out; panics when the SVG does not parse.
fn measure(chromium: &Path, svg: &Path, size: (u32, u32)) -> Vec<Laid> {
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("measure.html");
    let name = svg.file_name().unwrap().to_string_lossy();
    std::fs::copy(svg, dir.path().join(&*name)).unwrap();
    let html = MEASURE
        .replace("SVG", &name.replace('"', "%22"))
        .replace("\"W\"", &format!("\"{}\"", size.0))
        .replace("\"H\"", &format!("\"{}\"", size.1));
    std::fs::write(&page, html).unwrap();
    let dump = dir.path().join("dom.html");
    let args = [
        "--allow-file-access-from-files".to_string(),
        "--virtual-time-budget=5000".to_string(),
        "--dump-dom".to_string(),
        format!("file://{}", page.display()),
    ];
    let out = std::fs::File::create(&dump).unwrap();
    run_chromium(chromium, &dir.path().join("profile"), &args, out.into());
    let dom = std::fs::read_to_string(&dump).unwrap();
    assert!(
        !dom.lines().any(|l| l == "PARSEERROR"),
        "the SVG does not parse: {dom}"
    );
    assert!(
        dom.contains("\nROOT\tsvg\n"),
        "no <svg> root, or no measure: {dom}"
    );
    dom.lines().filter_map(laid).collect()
}

fn laid(line: &str) -> Option<Laid> {
    let f: Vec<&str> = line.split('\t').collect();
    let [class, x, y, w, h, text] = f.as_slice() else {
        return None;
    };
    let text = text.replace("%20", " ");
    Some(Laid {
        class: class.to_string(),
        x: x.parse().ok()?,
        y: y.parse().ok()?,
        w: w.parse().ok()?,
        h: h.parse().ok()?,
        text: percent_decode(&text),
    })
}

/// `encodeURIComponent` undone.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let (mut out, mut i) = (Vec::new(), 0);
    while i < b.len() {
        match (b[i], s.get(i + 1..i + 3).map(|h| u8::from_str_radix(h, 16))) {
            (b'%', Some(Ok(v))) => {
                out.push(v);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

/// The laid-out texts are inside the drawing, the tick labels and the legend items in one
/// row apart from each other; the ones named are there.
fn assert_laid_out(texts: &[Laid], size: (u32, u32), wanted: &[&str]) {
    let (w, h) = (f64::from(size.0), f64::from(size.1));
    for t in texts {
        assert!(t.w > 0.0 && t.h > 0.0, "not laid out: {t:?}");
        assert!(
            t.x >= 0.0 && t.x + t.w <= w && t.y >= 0.0 && t.y + t.h <= h,
            "outside the {w}x{h} drawing: {t:?}"
        );
    }
    for want in wanted {
        assert!(
            texts.iter().any(|t| t.text == *want),
            "no {want:?} in {texts:#?}"
        );
    }
    let apart = |mut row: Vec<&Laid>, what: &str| {
        row.sort_by(|a, b| a.x.total_cmp(&b.x));
        for p in row.windows(2) {
            assert!(p[0].x + p[0].w < p[1].x, "{what} overlap: {p:?}");
        }
    };
    let ticks: Vec<&Laid> = texts.iter().filter(|t| t.class == "tick").collect();
    assert!(ticks.len() >= 5, "time ticks: {ticks:?}");
    apart(ticks, "tick labels");
    let legend: Vec<&Laid> = texts
        .iter()
        .filter(|t| t.class.starts_with("legend-"))
        .collect();
    assert_eq!(legend.len(), 7, "legend items: {legend:?}");
    let mut rows: Vec<f64> = legend.iter().map(|t| t.y).collect();
    rows.dedup();
    for y in rows {
        apart(
            legend.iter().copied().filter(|t| t.y == y).collect(),
            "legend items",
        );
    }
}

/// The screenshot holds the series' blue, the flip's red, on a white page, and dark text
/// under the panels (the ticks and the legend).
fn assert_drawn(shot: &(u32, u32, Vec<[u8; 3]>), size: (u32, u32), under_panels: u32) {
    let (w, h, pixels) = shot;
    assert_eq!((*w, *h), size, "the screenshot has the SVG's size");
    let near = |p: &[u8; 3], q: [u8; 3]| p.iter().zip(q).all(|(a, b)| a.abs_diff(b) <= 40);
    let count = |q: [u8; 3]| pixels.iter().filter(|p| near(p, q)).count();
    let (blue, red, white) = (
        count([0x1f, 0x5f, 0xbf]),
        count([0xd6, 0x20, 0x20]),
        count([255, 255, 255]),
    );
    assert!(blue > 500, "the series' line: {blue} blue pixels");
    assert!(red > 100, "the flip's line: {red} red pixels");
    assert!(
        white > pixels.len() / 2 && white < pixels.len(),
        "a white page with a drawing"
    );
    let below = pixels[(under_panels * w) as usize..]
        .iter()
        .filter(|p| p.iter().all(|c| *c < 120))
        .count();
    assert!(
        below > 400,
        "the ticks' and the legend's text: {below} dark pixels"
    );
}

#[test]
fn the_svg_renders_in_a_real_browser() {
    let Some(chromium) = chromium() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("rec.jsonl");
    recording(&rec);
    let out_dir = dir.path().join("svg");
    let out = Command::new(BIN)
        .args([
            "backtest",
            "--recording",
            rec.to_str().unwrap(),
            "--svg",
            out_dir.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let svg_path = out_dir.join("target=api.svg");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("wrote {}", svg_path.display())),
        "{stdout}"
    );
    let svg = std::fs::read_to_string(&svg_path).unwrap();
    let size = svg_size(&svg);
    // One panel (fds): 50 px of title, 180 of panel.
    assert_drawn(&screenshot(&chromium, &svg_path, size), size, 50 + 180 - 10);
    // 2027-01-15 08:00 to 10:59:45, every 15 minutes; the flip 1h45m before the restart.
    let texts = measure(&chromium, &svg_path, size);
    let wanted = [
        "08:00",
        "10:45",
        "2027-01-15",
        "limit 1024",
        "series",
        "lead: flip to exhaustion/restart",
    ];
    assert_laid_out(&texts, size, &wanted);
    assert!(
        texts.iter().any(|t| t.text.starts_with("kubelet lead ")),
        "{texts:#?}"
    );
}

/// 2026-12-05T23:30:00Z, where the README's worked example starts.
const EXAMPLE_T0_S: u64 = 1_796_513_400;
/// The leaky process is replaced 2h45m in.
const EXAMPLE_RESTART_S: u64 = 2 * 3600 + 45 * 60;

/// The leaky instance of `tests/backtest_prometheus.rs` as backtest reads it from
/// Prometheus: 5 hours at 15 s of `process_open_fds` (+5/min from 300 to 1021, held until
/// the restart, then 300 and a little noise), `process_max_fds` 1024 and the start time.
fn example_history(labels: &[(&str, &str)]) -> TargetHistory {
    let mut h = TargetHistory::default();
    for (k, v) in labels {
        h.labels.insert(k.to_string(), v.to_string());
    }
    let times: Vec<u64> = (0..=5 * 3600 / 15).map(|i| i * 15).collect();
    let at = |s: u64| (EXAMPLE_T0_S + s) * 1000;
    let fds = |s: u64| {
        if s < EXAMPLE_RESTART_S {
            (300 + s * 5 / 60).min(1021)
        } else {
            300 + (s / 15) % 3
        }
    };
    let started = |s: u64| match s >= EXAMPLE_RESTART_S {
        true => EXAMPLE_T0_S + EXAMPLE_RESTART_S,
        false => EXAMPLE_T0_S - 3600,
    };
    h.values.insert(
        Series::Fds,
        times.iter().map(|&s| (at(s), fds(s) as f64)).collect(),
    );
    h.limits.insert(
        Series::Fds,
        times.iter().map(|&s| (at(s), 1024.0)).collect(),
    );
    h.starts = times.iter().map(|&s| (at(s), started(s) as f64)).collect();
    h
}

fn example() -> TargetReport {
    let h = example_history(&[("instance", "leaky:9100"), ("job", "api")]);
    replay(&h, &Setup::default())
}

#[test]
fn the_readme_example_is_what_backtest_draws_today() {
    let r = example();
    // The README's text report of the same history: the flip at 01:25:30, fds at their
    // limit at 01:53:00, the restart at 02:15:00.
    let flips: Vec<String> = r.flips.iter().map(|f| rfc3339(f.at_ms)).collect();
    assert_eq!(flips, ["2026-12-06T01:25:30Z"]);
    assert_eq!(rfc3339(r.exhaustions[0].at_ms), "2026-12-06T01:53:00Z");
    assert_eq!(rfc3339(r.restarts[0]), "2026-12-06T02:15:00Z");
    let svg = svg::render(&r);
    assert!(svg.contains(">kubelet lead 27m30s</text>"), "{svg}");
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/backtest-example.svg");
    if std::env::var_os("LEAKWATCH_WRITE_BACKTEST_EXAMPLE").is_some() {
        std::fs::write(&path, &svg).unwrap();
        return;
    }
    match std::fs::read_to_string(&path) {
        Ok(checked_in) => assert!(
            checked_in == svg,
            "{} is not what backtest draws today: regenerate it with \
             LEAKWATCH_WRITE_BACKTEST_EXAMPLE=1 cargo test --test backtest_svg readme_example",
            path.display()
        ),
        Err(e) => eprintln!("{}: {e}; not compared", path.display()),
    }
}

#[test]
fn the_readme_example_and_hostile_labels_render_in_a_real_browser() {
    let Some(chromium) = chromium() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let example_path = dir.path().join("backtest-example.svg");
    let svg = svg::render(&example());
    std::fs::write(&example_path, &svg).unwrap();
    let size = svg_size(&svg);
    assert_drawn(
        &screenshot(&chromium, &example_path, size),
        size,
        50 + 180 - 10,
    );
    let texts = measure(&chromium, &example_path, size);
    let wanted = [
        "23:30",
        "01:30",
        "04:30",
        "2026-12-05",
        "2026-12-06",
        "limit 1024",
        "kubelet lead 27m30s",
        "/healthz would answer 503",
    ];
    assert_laid_out(&texts, size, &wanted);

    let hostile = "x\"/><script>alert(1)</script>&amp;'\u{1}]]>";
    let h = example_history(&[("job", hostile), ("<b a=\"1\">", "&")]);
    let r = replay(&h, &Setup::default());
    let path = dir.path().join("hostile.svg");
    std::fs::write(&path, svg::render(&r)).unwrap();
    let texts = measure(&chromium, &path, size);
    let title = texts.iter().find(|t| t.class == "title").unwrap();
    assert_eq!(title.text, labels_text(&r.labels), "the labels, as text");
    assert!(title.text.contains("<script>alert(1)</script>"));
}
