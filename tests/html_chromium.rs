//! `report --html` and `diagnose --html` render in headless Chromium: on every input kind
//! (ftrace text, perf script, trace.dat) and host kind (VMX, SVM, arm64, PVM), the page loads
//! without script or console errors, every number in its tables equals `report --json` on
//! the same input, and a screenshot shows the plots drawn (non-blank pixels where the page
//! says its plots are). Skips with a printed reason when Chromium is missing (fails under
//! KVMSCOPE_REQUIRE_KVM=1; .ci/run installs Debian's `chromium`).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The lab test's guest must not share this machine's two CPUs with the Chromium runs (its
/// rate is what the timer-storm rule judges): the two tests take turns.
static HEAVY: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_kvmscope")
}

fn fixture(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(p)
}

fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser"].into_iter().find(|c| {
        Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

fn require_chromium() -> Option<&'static str> {
    let c = chromium();
    if c.is_none() {
        kvmscope_capture::host::require_tool(
            "chromium",
            "apt-get install --no-install-recommends chromium",
        );
    }
    c
}

/// Runs headless Chromium on `page` with `extra` arguments; returns (stdout, stderr).
fn run_chromium(chrome: &str, page: &Path, profile: &Path, extra: &[&str]) -> (String, String) {
    let out = Command::new(chrome)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--hide-scrollbars",
            "--enable-logging=stderr",
            "--v=0",
            // Nothing on the page may need the network: refuse any fetch it would make.
            "--host-resolver-rules=MAP * ~NOTFOUND",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("run chromium");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn lookup<'v>(v: &'v Value, path: &str) -> Option<&'v Value> {
    let mut cur = v;
    for part in path.split('.') {
        cur = match cur {
            Value::Object(m) => m.get(part)?,
            Value::Array(a) => a.get(part.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

/// Every `data-k` cell of the rendered DOM against the report's JSON; returns how many.
fn check_cells(dom: &str, report: &Value, name: &str) -> usize {
    let re = regex::Regex::new(r#"<td class="n" data-k="([^"]+)"([^>]*)>([^<]*)</td>"#).unwrap();
    let attr = |attrs: &str, key: &str| -> Option<f64> {
        let re = regex::Regex::new(&format!(r#"{key}="([^"]+)""#)).unwrap();
        re.captures(attrs).map(|c| c[1].parse().unwrap())
    };
    let mut n = 0;
    for c in re.captures_iter(dom) {
        let (path, attrs, shown) = (&c[1], &c[2], c[3].replace(',', ""));
        let want = lookup(report, path)
            .unwrap_or_else(|| panic!("{name}: {path} is not in report --json"));
        if attrs.contains("data-hex") {
            let got = u64::from_str_radix(shown.trim_start_matches("0x"), 16).unwrap();
            assert_eq!(Some(got), want.as_u64(), "{name}: {path}");
        } else {
            let scale = attr(attrs, "data-scale").unwrap_or(1.0);
            let dp = attr(attrs, "data-dp").unwrap_or(0.0);
            let got: f64 = shown.parse().unwrap();
            let want = want.as_f64().unwrap();
            let tol = 0.5 * 10f64.powf(-dp) * scale * (1.0 + 1e-9) + 1e-9;
            assert!(
                (got * scale - want).abs() <= tol,
                "{name}: {path} shows {shown}, report --json has {want}"
            );
        }
        n += 1;
    }
    n
}

/// Pixels in the rectangle drawn in colour (data: the palette, the heat ramp, the flame
/// graph), as opposed to white, grey axes and black text.
fn inked(img: &(u32, u32, Vec<u8>), rect: (u32, u32, u32, u32)) -> u64 {
    let (w, h, px) = img;
    let (x0, y0, rw, rh) = rect;
    let mut ink = 0u64;
    for y in y0..(y0 + rh).min(*h) {
        for x in x0..(x0 + rw).min(*w) {
            let i = ((y * w + x) * 4) as usize;
            let (r, g, b) = (px[i], px[i + 1], px[i + 2]);
            if r.max(g).max(b) - r.min(g).min(b) > 50 {
                ink += 1;
            }
        }
    }
    ink
}

fn decode_png(path: &Path) -> (u32, u32, Vec<u8>) {
    let dec = png::Decoder::new(std::fs::File::open(path).unwrap());
    let mut dec = dec;
    dec.set_transformations(
        png::Transformations::normalize_to_color8() | png::Transformations::ALPHA,
    );
    let mut reader = dec.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    buf.truncate(info.buffer_size());
    // Expand to RGBA.
    let px = match info.color_type {
        png::ColorType::Rgba => buf,
        png::ColorType::Rgb => buf
            .chunks(3)
            .flat_map(|c| [c[0], c[1], c[2], 255])
            .collect(),
        png::ColorType::GrayscaleAlpha => buf
            .chunks(2)
            .flat_map(|c| [c[0], c[0], c[0], c[1]])
            .collect(),
        png::ColorType::Grayscale => buf.iter().flat_map(|&c| [c, c, c, 255]).collect(),
        other => panic!("unexpected PNG colour type {other:?}"),
    };
    (info.width, info.height, px)
}

/// One input: render, load, check the numbers and the pixels.
fn check(chrome: &str, sub: &str, input: &str, diagnose: bool, stacks: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("page.html");
    let path = fixture(input);
    let mut cmd = Command::new(bin());
    cmd.arg(sub).arg(&path).arg("--html").arg(&page);
    if let Some(s) = stacks {
        cmd.arg("--stacks").arg(fixture(s));
    }
    let out = cmd.output().unwrap();
    let code = out.status.code().unwrap_or(-1);
    assert!(
        code == 0 || (diagnose && code == 1),
        "{sub} {input} --html: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let html = std::fs::read_to_string(&page).unwrap();
    // Self-contained: no external resources.
    for bad in [
        "src=\"http",
        "href=\"http",
        "src=\"//",
        "@import",
        "url(http",
    ] {
        assert!(!html.contains(bad), "{input}: page refers outside: {bad}");
    }
    let json = Command::new(bin())
        .args(["report", "--json"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(json.status.success());
    let report: Value = serde_json::from_slice(&json.stdout).unwrap();

    let profile = dir.path().join("profile");
    // The same width as the screenshot below, so that the layout (and the plots' places) match.
    let (dom, log) = run_chromium(
        chrome,
        &page,
        &profile,
        &["--window-size=1200,1000", "--dump-dom"],
    );
    assert!(
        dom.contains("data-ready=\"1\""),
        "{input}: the page's script did not finish:\n{log}"
    );
    assert!(
        !dom.contains("id=\"js-errors\""),
        "{input}: script errors: {dom}"
    );
    for line in log.lines() {
        assert!(
            !line.contains(":CONSOLE") && !line.contains("Uncaught"),
            "{input}: console message: {line}"
        );
    }
    let selfcheck =
        regex::Regex::new(r#"id="selfcheck" data-checked="(\d+)" data-mismatches="(\d+)""#)
            .unwrap()
            .captures(&dom)
            .unwrap_or_else(|| panic!("{input}: no selfcheck"));
    assert_eq!(&selfcheck[2], "0", "{input}: the page's own check: {dom}");
    let cells = check_cells(&dom, &report, input);
    assert!(cells > 10, "{input}: only {cells} numbers on the page");
    assert_eq!(
        cells.to_string(),
        selfcheck[1],
        "{input}: every cell checked by the page"
    );
    // The embedded data is the report.
    let data = regex::Regex::new(
        r#"(?s)<script type="application/json" id="kvmscope-data">(.*?)</script>"#,
    )
    .unwrap()
    .captures(&html)
    .unwrap()[1]
        .replace("<\\/", "</");
    let data: Value = serde_json::from_str(&data).unwrap();
    assert_eq!(data["report"]["overview"], report["overview"], "{input}");
    assert_eq!(data["report"]["exits"], report["exits"], "{input}");
    assert_eq!(data["report"]["accesses"], report["accesses"], "{input}");

    // Where the plots are, as laid out by the page itself.
    let rects: Vec<(String, (u32, u32, u32, u32))> =
        regex::Regex::new(r#"<(?:svg|img) class="(?:plot|flame)"(?: id="([^"]*)")?[^>]*data-rect="(\d+),(\d+),(\d+),(\d+)""#)
            .unwrap()
            .captures_iter(&dom)
            .map(|c| {
                let n = |i: usize| c[i].parse::<u32>().unwrap();
                (
                    c.get(1).map_or("flame", |m| m.as_str()).to_string(),
                    (n(2), n(3), n(4), n(5)),
                )
            })
            .collect();
    assert!(
        rects.iter().any(|r| r.0 == "plot-rate"),
        "{input}: no rate plot"
    );
    assert!(
        rects.iter().any(|r| r.0 == "plot-heatmap"),
        "{input}: no heat map"
    );
    if report["exits"]["paired"].as_u64().unwrap_or(0) > 0 {
        assert!(
            rects.iter().any(|r| r.0.starts_with("plot-latency")),
            "{input}: no histogram"
        );
    }
    if stacks.is_some() {
        assert!(
            rects.iter().any(|r| r.0 == "flame"),
            "{input}: no flame graph"
        );
    }
    let height = rects.iter().map(|r| r.1 .1 + r.1 .3).max().unwrap() + 20;
    let shot = dir.path().join("shot.png");
    let (_, log) = run_chromium(
        chrome,
        &page,
        &profile,
        &[
            &format!("--window-size=1200,{height}"),
            &format!("--screenshot={}", shot.display()),
        ],
    );
    assert!(shot.exists(), "{input}: no screenshot:\n{log}");
    let img = decode_png(&shot);
    for (id, rect) in &rects {
        assert!(
            rect.0 + rect.2 <= img.0 && rect.1 + rect.3 <= img.1,
            "{input}: plot {id} at {rect:?} is outside the {}x{} screenshot",
            img.0,
            img.1
        );
        // Axes and labels are grey or black: coloured pixels are drawn data.
        let ink = inked(&img, *rect);
        let area = u64::from(rect.2) * u64::from(rect.3);
        assert!(
            ink >= 300 && ink * 500 >= area,
            "{input}: plot {id} at {rect:?} looks blank ({ink} coloured pixels of {area})"
        );
    }
}

#[test]
fn html_renders_in_chromium_on_every_input_and_host_kind() {
    let Some(chrome) = require_chromium() else {
        return;
    };
    let _turn = HEAVY.lock().unwrap_or_else(|p| p.into_inner());
    let cases: &[(&str, &str, bool, Option<&str>)] = &[
        (
            "diagnose",
            "public/vmx-new-nested-cr0wp.txt",
            true,
            Some("stacks/kvm-lab-perf-script.txt"),
        ),
        (
            "report",
            "public/svm-npf-emulation-failure.txt",
            false,
            None,
        ),
        ("report", "public/arm64-nv-sys64-loop.txt", false, None),
        ("report", "public/perf-script-triple-fault.txt", false, None),
        ("diagnose", "host/pvm-timer-storm.txt", true, None),
        ("report", "host/perf-script-pio.perfscript", false, None),
        (
            "report",
            "tracedat/trace-cmd-extract-lab-v7-zstd.dat",
            false,
            None,
        ),
    ];
    std::thread::scope(|s| {
        for chunk in cases.chunks(cases.len().div_ceil(2)) {
            s.spawn(move || {
                for (sub, input, diagnose, stacks) in chunk {
                    check(chrome, sub, input, *diagnose, *stacks);
                }
            });
        }
    });
}

/// The page holds aggregates only: an input 300 times larger (same events, repeated) gives a
/// page of about the same size and the same number of drawn elements.
#[test]
fn page_size_does_not_grow_with_the_input() {
    let dir = tempfile::tempdir().unwrap();
    let one = fixture("public/vmx-new-nested-cr0wp.txt");
    let text = std::fs::read_to_string(&one).unwrap();
    // Repeated with later timestamps each time, so the timeline spans 300x as long.
    let mut big = String::new();
    let re = regex::Regex::new(r"(\s)(\d+)\.(\d{6}):").unwrap();
    for rep in 0..300u64 {
        for line in text.lines() {
            let shifted = re.replace(line, |c: &regex::Captures<'_>| {
                let s: u64 = c[2].parse().unwrap();
                format!("{}{}.{}:", &c[1], s + rep, &c[3])
            });
            big.push_str(&shifted);
            big.push('\n');
        }
    }
    let big_path = dir.path().join("big.txt");
    std::fs::write(&big_path, &big).unwrap();
    let page = |input: &Path, out: &str| {
        let out = dir.path().join(out);
        let o = Command::new(bin())
            .arg("report")
            .arg(input)
            .arg("--html")
            .arg(&out)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        std::fs::read_to_string(out).unwrap()
    };
    let small = page(&one, "one.html");
    let large = page(&big_path, "big.html");
    let elements = |s: &str| s.matches("<rect").count() + s.matches("<path").count();
    assert!(big.len() > 300 * text.len() / 2);
    assert!(
        large.len() < small.len() * 3 / 2 + 50_000,
        "page {} bytes for the large input, {} for the small one",
        large.len(),
        small.len()
    );
    let max_elements = 4 * kvmscope_analysis::timeline::MAX_BUCKETS * 16;
    assert!(
        elements(&large) < max_elements,
        "{} elements",
        elements(&large)
    );
    // The counts did grow: the page shows the large input's totals.
    assert!(large.contains("\"events\":23400") || large.contains("23,400"));
}

/// `diagnose --lab S --html`: the live path writes the page too, with the finding on it.
#[test]
fn lab_diagnosis_writes_the_page() {
    if !kvmscope_capture::host::require_kvm() || kvmscope_capture::host::require_tracefs().is_none()
    {
        return;
    }
    let _turn = HEAVY.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("lab.html");
    let out = Command::new(bin())
        .args([
            "diagnose",
            "--lab",
            "timer-storm",
            "--period",
            "50us",
            "--live",
            "1s",
            "-q",
            "--buffer-kb",
            "16384",
            "--json",
            "--html",
        ])
        .arg(&page)
        .output()
        .unwrap();
    assert_ne!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(
        html.contains("data-rule=\"timer-storm\""),
        "no timer-storm finding on the page"
    );
    assert!(
        html.contains("lab guest `timer-storm` ran"),
        "the run's note is missing"
    );
    let Some(chrome) = require_chromium() else {
        return;
    };
    let (dom, log) = run_chromium(
        chrome,
        &page,
        &dir.path().join("profile"),
        &["--window-size=1200,1000", "--dump-dom"],
    );
    assert!(dom.contains("data-ready=\"1\""), "{log}");
    assert!(
        dom.contains("data-mismatches=\"0\""),
        "the page's own check failed"
    );
    assert!(!dom.contains("id=\"js-errors\""));
}
