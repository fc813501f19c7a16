//! `leakwatch backtest --svg DIR` draws what a person needs at a glance, and a real browser
//! shows it: Debian's chromium renders each SVG headless to a PNG of the SVG's size, which
//! is decoded here and must hold the series' blue line and the flip's red, not a blank page.
//!
//! Without chromium the test says so and passes, unless `LEAKWATCH_REQUIRE_CHROMIUM=1`
//! (CI sets it, and `.ci/run` installs chromium).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::BIN;
use leakwatch::backtest::recording::RecordLine;
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
fn screenshot(chromium: &Path, svg: &Path, png: &Path, size: (u32, u32), profile: &Path) {
    let mut child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--window-size={},{}", size.0, size.1))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", svg.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
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
    let png = dir.path().join("shot.png");
    screenshot(
        &chromium,
        &svg_path,
        &png,
        size,
        &dir.path().join("profile"),
    );
    let (w, h, pixels) = decode_png(&std::fs::read(&png).expect("chromium wrote the screenshot"));
    assert_eq!((w, h), size, "the screenshot has the SVG's size");
    let near = |p: &[u8; 3], q: [u8; 3]| p.iter().zip(q).all(|(a, b)| a.abs_diff(b) <= 40);
    let blue = pixels
        .iter()
        .filter(|p| near(p, [0x1f, 0x5f, 0xbf]))
        .count();
    let red = pixels
        .iter()
        .filter(|p| near(p, [0xd6, 0x20, 0x20]))
        .count();
    let white = pixels.iter().filter(|p| near(p, [255, 255, 255])).count();
    assert!(blue > 500, "the series' line: {blue} blue pixels");
    assert!(red > 100, "the flip's line: {red} red pixels");
    assert!(
        white > pixels.len() / 2 && white < pixels.len(),
        "a white page with a drawing"
    );
}
