//! TUI frames drawn on ratatui's TestBackend from deterministic data, compared with golden
//! text in tests/golden/ (`KVMSCOPE_BLESS=1` rewrites them).

use kvmscope_top::catalog::{Key, Mode};
use kvmscope_top::live::VmRow;
use kvmscope_top::model::{Model, View};
use kvmscope_top::tui::{draw, Action, App, Screen};
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;

fn keys() -> Vec<Key> {
    let k = |n: &str, p: Option<usize>| Key {
        name: n.into(),
        parent: p,
    };
    vec![
        k("kvm_exit", None),
        k("kvm_exit(MSR_WRITE)", Some(0)),
        k("kvm_exit(HLT)", Some(0)),
        k("kvm_entry", None),
        k("kvm_msr", None),
        k("kvm_msr(IA32_TSC_DEADLINE)", Some(4)),
        k("kvm_pio", None),
        k("kvm_pio(0x3f8)", Some(6)),
        k("kvm_hv_timer_state", None),
    ]
}

/// Field report 003's first screen, roughly: a timer storm of TSC-deadline writes.
fn app() -> App {
    let mut m = Model::new(Mode::Host, "summary", keys(), &[0; 9]);
    let step = |i: u64| {
        vec![
            66_300 * i,
            36_000 * i,
            23_000 * i,
            66_300 * i,
            33_160 * i,
            33_000 * i,
            100 * i + i * i,
            100 * i + i * i,
            66_120 * i,
        ]
    };
    let per_target = |i: u64| {
        vec![
            (
                "tid 4242 CPU 0/KVM".to_string(),
                step(i).iter().map(|v| v * 3 / 4).collect(),
            ),
            (
                "tid 4243 CPU 1/KVM".to_string(),
                step(i).iter().map(|v| v / 4).collect(),
            ),
        ]
    };
    for i in 1..=12 {
        m.update(&step(i), &per_target(i), 1.0);
    }
    App::new(m, View::default(), std::time::Duration::from_secs(1))
}

fn press(app: &mut App, c: KeyCode) -> Action {
    app.key(KeyEvent::new(c, KeyModifiers::NONE))
}

fn frame(app: &App) -> String {
    let mut t = Terminal::new(TestBackend::new(80, 24)).expect("terminal");
    t.draw(|f| draw(f, app)).expect("draw");
    let buf = t.backend().buffer().clone();
    let mut s = String::new();
    for y in 0..buf.area.height {
        let mut line = String::new();
        for x in 0..buf.area.width {
            line.push_str(buf[(x, y)].symbol());
        }
        s.push_str(line.trim_end());
        s.push('\n');
    }
    s
}

fn golden(name: &str, got: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("KVMSCOPE_BLESS").is_some() {
        std::fs::write(&path, got).expect("bless");
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run with KVMSCOPE_BLESS=1 to create it",
            path.display()
        )
    });
    assert_eq!(got, want, "frame differs from {}", path.display());
}

#[test]
fn events_screen() {
    let app = app();
    golden("events.txt", &frame(&app));
}

#[test]
fn drilldown_sort_and_selection() {
    let mut app = app();
    assert_eq!(press(&mut app, KeyCode::Char('x')), Action::Drilldown(true));
    press(&mut app, KeyCode::Down);
    press(&mut app, KeyCode::Down);
    golden("drilldown.txt", &frame(&app));
    press(&mut app, KeyCode::Char('o'));
    golden("sorted_by_total.txt", &frame(&app));
}

#[test]
fn filter_prompt_and_filtered_view() {
    let mut app = app();
    press(&mut app, KeyCode::Char('f'));
    for c in "msr|pio".chars() {
        press(&mut app, KeyCode::Char(c));
    }
    golden("filter_prompt.txt", &frame(&app));
    press(&mut app, KeyCode::Enter);
    golden("filtered.txt", &frame(&app));
    press(&mut app, KeyCode::Char('c'));
    assert!(app.view.filter.is_none());
}

#[test]
fn vcpu_view_help_and_vm_list() {
    let mut app = app();
    press(&mut app, KeyCode::Char('v'));
    assert_eq!(app.screen, Screen::Vcpus);
    app.model.scope = "pid 4241 (web1)".into();
    golden("vcpus.txt", &frame(&app));
    press(&mut app, KeyCode::Char('h'));
    golden("help.txt", &frame(&app));
    press(&mut app, KeyCode::Char('q'));
    assert_eq!(app.screen, Screen::Events);
    assert_eq!(press(&mut app, KeyCode::Char('b')), Action::ListVms);
    app.vms = vec![
        VmRow {
            pid: 4241,
            name: "web1".into(),
            vcpus: 2,
            total: 2_000_000,
            rate: 400_000.0,
        },
        VmRow {
            pid: 5100,
            name: "db".into(),
            vcpus: 4,
            total: 43_827,
            rate: 9_250.0,
        },
    ];
    golden("vms.txt", &frame(&app));
    press(&mut app, KeyCode::Down);
    assert_eq!(
        press(&mut app, KeyCode::Enter),
        Action::Scope(Some("5100".into()))
    );
    press(&mut app, KeyCode::Char('g'));
    for c in "web1".chars() {
        press(&mut app, KeyCode::Char(c));
    }
    assert_eq!(
        press(&mut app, KeyCode::Enter),
        Action::Scope(Some("web1".into()))
    );
    assert_eq!(press(&mut app, KeyCode::Char('q')), Action::Quit);
}

#[test]
fn interval_prompt_rejects_nonsense() {
    let mut app = app();
    press(&mut app, KeyCode::Char('s'));
    press(&mut app, KeyCode::Char('z'));
    press(&mut app, KeyCode::Enter);
    assert!(app
        .message
        .as_deref()
        .unwrap_or("")
        .contains("not an interval"));
    press(&mut app, KeyCode::Char('s'));
    for c in "0.5".chars() {
        press(&mut app, KeyCode::Char(c));
    }
    press(&mut app, KeyCode::Enter);
    assert_eq!(app.interval, std::time::Duration::from_millis(500));
    press(&mut app, KeyCode::Char('r'));
    assert_eq!(app.model.rows(&View::default())[0].total, 0);
}
