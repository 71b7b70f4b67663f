//! The ratatui screen: kvm_stat's table and keys (b c f g p h o q r s x), plus a VM list
//! with guest names and per-VM totals, a per-vCPU (per-CPU) view, a sparkline of the
//! selected row's rate and a help screen.
//!
//! [`App`] is the state, [`App::key`] changes it, [`draw`] draws it without changing it (so
//! frames are tested with ratatui's `TestBackend`), and [`run`] is the live loop. The
//! terminal is restored on every exit: normal, error, panic (ratatui's panic hook) and
//! SIGINT/SIGTERM/SIGHUP (the capture guard asks the loop to stop).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use ratatui::crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Sparkline};
use ratatui::Frame;

use crate::catalog::Catalog;
use crate::live::{Collector, Scope, TopError, VmRow, VmTotals};
use crate::model::{Model, Row, SortBy, View};
use crate::render;

/// Which screen is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    /// The event table.
    Events,
    /// Running VMs with per-VM totals (`b`).
    Vms,
    /// Per vCPU thread (with a VM selected) or per CPU (`v`).
    Vcpus,
    /// Key reference (`h`).
    Help,
}

/// What a prompt asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ask {
    /// A regular expression over event names (`f`).
    Filter,
    /// A guest name or PID (`g`, `p`).
    Guest,
    /// The refresh interval in seconds (`s`).
    Interval,
}

/// What the live loop must do after a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    None,
    Quit,
    /// Read the counters now.
    Refresh,
    /// Count only this VM (pid or name); None: every CPU.
    Scope(Option<String>),
    /// Open the VM list counters.
    ListVms,
    /// Count the drill-down children (true) or stop counting them.
    Drilldown(bool),
}

/// The TUI state.
#[derive(Debug)]
pub struct App {
    pub model: Model,
    pub view: View,
    pub screen: Screen,
    /// Selected line of the current table.
    pub selected: usize,
    /// An open prompt and its text.
    pub prompt: Option<(Ask, String)>,
    /// A one-line message (errors of the last action).
    pub message: Option<String>,
    pub interval: Duration,
    /// The VM list (per-VM totals).
    pub vms: Vec<VmRow>,
}

impl App {
    pub fn new(model: Model, view: View, interval: Duration) -> App {
        App {
            model,
            view,
            screen: Screen::Events,
            selected: 0,
            prompt: None,
            message: None,
            interval,
            vms: Vec::new(),
        }
    }

    fn rows(&self) -> Vec<Row> {
        self.model.rows(&self.view)
    }

    fn lines_in_screen(&self) -> usize {
        match self.screen {
            Screen::Events => self.rows().len(),
            Screen::Vms => self.vms.len(),
            Screen::Vcpus => self
                .model
                .target_rows(&self.view, self.selected_key())
                .len(),
            Screen::Help => 0,
        }
    }

    /// The counter of the selected event row.
    pub fn selected_key(&self) -> Option<usize> {
        let rows = self.rows();
        rows.get(self.selected.min(rows.len().saturating_sub(1)))
            .map(|r| r.key)
    }

    /// Handles one key.
    pub fn key(&mut self, k: KeyEvent) -> Action {
        if k.kind != KeyEventKind::Press {
            return Action::None;
        }
        if k.modifiers.contains(KeyModifiers::CONTROL) && k.code == KeyCode::Char('c') {
            return Action::Quit;
        }
        if let Some((ask, mut text)) = self.prompt.take() {
            match k.code {
                KeyCode::Enter => return self.answer(ask, text.trim()),
                KeyCode::Esc => {}
                KeyCode::Backspace => {
                    text.pop();
                    self.prompt = Some((ask, text));
                }
                KeyCode::Char(c) => {
                    text.push(c);
                    self.prompt = Some((ask, text));
                }
                _ => self.prompt = Some((ask, text)),
            }
            return Action::None;
        }
        self.message = None;
        let screen_is = |s: Screen, me: &App| me.screen == s;
        match k.code {
            KeyCode::Char('q') => {
                if screen_is(Screen::Events, self) {
                    return Action::Quit;
                }
                self.screen = Screen::Events;
            }
            KeyCode::Esc => {
                if screen_is(Screen::Events, self) {
                    return Action::Quit;
                }
                self.screen = Screen::Events;
            }
            KeyCode::Char('h') | KeyCode::Char('?') => {
                self.screen = if self.screen == Screen::Help {
                    Screen::Events
                } else {
                    Screen::Help
                };
            }
            KeyCode::Char('x') => {
                self.view.drilldown = !self.view.drilldown;
                return Action::Drilldown(self.view.drilldown);
            }
            KeyCode::Char('o') => {
                self.view.sort = match self.view.sort {
                    SortBy::Rate => SortBy::Total,
                    SortBy::Total => SortBy::Rate,
                }
            }
            KeyCode::Char('r') => self.model.reset(),
            KeyCode::Char('c') => {
                self.view.filter = None;
                self.selected = 0;
            }
            KeyCode::Char('f') => self.prompt = Some((Ask::Filter, String::new())),
            KeyCode::Char('g') | KeyCode::Char('p') => {
                self.prompt = Some((Ask::Guest, String::new()))
            }
            KeyCode::Char('s') => self.prompt = Some((Ask::Interval, String::new())),
            KeyCode::Char('b') => {
                if self.screen == Screen::Vms {
                    self.screen = Screen::Events;
                } else {
                    self.screen = Screen::Vms;
                    self.selected = 0;
                    return Action::ListVms;
                }
            }
            KeyCode::Char('v') => {
                self.screen = if self.screen == Screen::Vcpus {
                    Screen::Events
                } else {
                    Screen::Vcpus
                };
            }
            KeyCode::Up | KeyCode::Char('k') => self.selected = self.selected.saturating_sub(1),
            KeyCode::Down | KeyCode::Char('j') => {
                let n = self.lines_in_screen();
                if self.selected + 1 < n {
                    self.selected += 1;
                }
            }
            KeyCode::Enter if self.screen == Screen::Vms => {
                if let Some(vm) = self.vms.get(self.selected) {
                    let pid = vm.pid.to_string();
                    self.screen = Screen::Events;
                    self.selected = 0;
                    return Action::Scope(Some(pid));
                }
            }
            _ => return Action::Refresh,
        }
        Action::None
    }

    fn answer(&mut self, ask: Ask, text: &str) -> Action {
        match ask {
            Ask::Filter => {
                if text.is_empty() {
                    self.view.filter = None;
                } else {
                    match regex::Regex::new(text) {
                        Ok(re) => self.view.filter = Some(re),
                        Err(e) => self.message = Some(format!("bad regular expression: {e}")),
                    }
                }
                self.selected = 0;
                Action::None
            }
            Ask::Guest => {
                self.selected = 0;
                self.screen = Screen::Events;
                Action::Scope((!text.is_empty()).then(|| text.to_string()))
            }
            Ask::Interval => {
                match text.parse::<f64>() {
                    Ok(s) if s.is_finite() && s >= 0.1 => {
                        self.interval = Duration::from_secs_f64(s)
                    }
                    _ => {
                        self.message = Some(format!(
                            "{text:?} is not an interval: give seconds, 0.1 or more"
                        ))
                    }
                }
                Action::None
            }
        }
    }
}

fn fmt_interval(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{s:.0}s")
    } else {
        format!("{s}s")
    }
}

/// Draws the whole screen from `app` (nothing is changed).
pub fn draw(f: &mut Frame, app: &App) {
    let area = f.area();
    let [title, body, spark, status] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Min(3),
        Constraint::Length(if app.screen == Screen::Events { 5 } else { 0 }),
        Constraint::Length(1),
    ])
    .areas(area);
    let title_text = match app.screen {
        Screen::Vms => "kvm statistics - virtual machines".to_string(),
        Screen::Vcpus => format!("{} - per {}", app.model.title(), per_what(app)),
        Screen::Help => "kvmscope top - keys".to_string(),
        Screen::Events => app.model.title(),
    };
    f.render_widget(
        Paragraph::new(Line::from(Span::styled(
            title_text,
            Style::default().add_modifier(Modifier::BOLD),
        ))),
        title,
    );
    match app.screen {
        Screen::Events => draw_events(f, app, body, spark),
        Screen::Vms => draw_vms(f, app, body),
        Screen::Vcpus => draw_vcpus(f, app, body),
        Screen::Help => draw_help(f, body),
    }
    let status_text = if let Some((ask, text)) = &app.prompt {
        let q = match ask {
            Ask::Filter => "Show events matching (regex, empty for all): ",
            Ask::Guest => "Show guest (name or PID, empty for all): ",
            Ask::Interval => "Set update interval (seconds): ",
        };
        format!("{q}{text}_")
    } else if let Some(m) = &app.message {
        m.clone()
    } else {
        format!(
            "every {} | sort {} | drill-down {} | filter {} | h help  q quit",
            fmt_interval(app.interval),
            match app.view.sort {
                SortBy::Rate => "CurAvg/s",
                SortBy::Total => "Total",
            },
            if app.view.drilldown { "on" } else { "off" },
            app.view.filter.as_ref().map_or("-", |r| r.as_str()),
        )
    };
    f.render_widget(
        Paragraph::new(status_text).style(Style::default().add_modifier(Modifier::REVERSED)),
        status,
    );
}

fn per_what(app: &App) -> &'static str {
    if app.model.scope.starts_with("pid ") {
        "vCPU thread"
    } else {
        "CPU"
    }
}

fn window(selected: usize, len: usize, height: usize) -> (usize, usize) {
    let height = height.max(1);
    let start = if selected >= height {
        selected + 1 - height
    } else {
        0
    };
    (start, (start + height).min(len))
}

fn draw_events(f: &mut Frame, app: &App, body: Rect, spark: Rect) {
    let rows = app.rows();
    let (total, rate) = app.model.total(&rows);
    let sel = app.selected.min(rows.len().saturating_sub(1));
    let mut lines = vec![Line::from(Span::styled(
        render::header(),
        Style::default().add_modifier(Modifier::REVERSED),
    ))];
    let height = (body.height as usize).saturating_sub(2);
    let (start, end) = window(sel, rows.len(), height);
    for (i, r) in rows.iter().enumerate().take(end).skip(start) {
        let style = if i == sel {
            Style::default().add_modifier(Modifier::BOLD | Modifier::UNDERLINED)
        } else {
            Style::default()
        };
        lines.push(Line::from(Span::styled(render::row_line(r), style)));
    }
    lines.push(Line::from(render::total_line(total, rate)));
    f.render_widget(Paragraph::new(lines), body);
    if spark.height == 0 {
        return;
    }
    let Some(r) = rows.get(sel) else {
        return;
    };
    let hist = app.model.history(r.key);
    let width = spark.width.saturating_sub(2) as usize;
    let data: Vec<u64> = hist
        .iter()
        .skip(hist.len().saturating_sub(width))
        .map(|v| v.round() as u64)
        .collect();
    let max = data.iter().copied().max().unwrap_or(0);
    let block = Block::default().borders(Borders::TOP).title(format!(
        "{}: CurAvg/s over the last {} intervals (max {max})",
        r.name,
        data.len()
    ));
    f.render_widget(Sparkline::default().block(block).data(&data), spark);
}

fn draw_vms(f: &mut Frame, app: &App, body: Rect) {
    let mut lines = vec![Line::from(Span::styled(
        format!(
            " {:>8}  {:<30} {:>5} {:>12} {:>10}",
            "PID", "Guest", "vCPUs", "Total", "CurAvg/s"
        ),
        Style::default().add_modifier(Modifier::REVERSED),
    ))];
    if app.vms.is_empty() {
        lines.push(Line::from(" no process holds a KVM VM descriptor"));
    }
    let height = (body.height as usize).saturating_sub(1);
    let (start, end) = window(app.selected, app.vms.len(), height);
    for (i, v) in app.vms.iter().enumerate().take(end).skip(start) {
        let style = if i == app.selected {
            Style::default().add_modifier(Modifier::BOLD | Modifier::UNDERLINED)
        } else {
            Style::default()
        };
        lines.push(Line::from(Span::styled(
            format!(
                " {:>8}  {:<30} {:>5} {:>12} {:>10.0}",
                v.pid, v.name, v.vcpus, v.total, v.rate
            ),
            style,
        )));
    }
    lines.push(Line::from(""));
    lines.push(Line::from(
        " Enter: count only the selected VM   g/p: by name or PID   b: back",
    ));
    f.render_widget(Paragraph::new(lines), body);
}

fn draw_vcpus(f: &mut Frame, app: &App, body: Rect) {
    let key = app.selected_key();
    let ev = key
        .and_then(|k| app.model.keys().get(k))
        .map_or("-".to_string(), |k| k.name.clone());
    let rows = app.model.target_rows(&app.view, key);
    let mut lines = vec![Line::from(Span::styled(
        format!(
            " {:<32} {:>10} {:>9} {:>10} {:>9}",
            if per_what(app) == "CPU" {
                "CPU"
            } else {
                "Thread"
            },
            "Total",
            "CurAvg/s",
            "Total",
            "CurAvg/s"
        ),
        Style::default().add_modifier(Modifier::REVERSED),
    ))];
    lines.push(Line::from(format!(
        " {:<32} {:>20} {:>20}",
        "",
        "all events",
        truncate(&ev, 20)
    )));
    for r in &rows {
        lines.push(Line::from(format!(
            " {:<32} {:>10} {:>9.0} {:>10} {:>9.0}",
            truncate(&r.label, 32),
            r.total,
            r.rate,
            r.event_total,
            r.event_rate
        )));
    }
    if rows.is_empty() {
        lines.push(Line::from(" nothing counted per target yet"));
    }
    f.render_widget(Paragraph::new(lines), body);
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        s.chars().take(n.saturating_sub(1)).chain(['~']).collect()
    }
}

/// The help screen's lines.
pub const HELP: &[(&str, &str)] = &[
    (
        "b",
        "list running VMs with guest names and per-VM totals (Enter picks one)",
    ),
    ("c", "clear the event filter"),
    ("f", "filter events by regular expression"),
    ("g", "show only one guest, by name or PID (empty: all)"),
    ("p", "show only one guest, by PID or name (empty: all)"),
    ("h", "this help (again: back)"),
    (
        "o",
        "toggle sorting: CurAvg/s then Total, or Total then CurAvg/s",
    ),
    ("q", "quit (in a sub-screen: back)"),
    ("r", "reset the totals"),
    ("s", "set the update interval"),
    ("v", "per-vCPU thread view (per-CPU without a guest)"),
    (
        "x",
        "toggle drill-down rows (exit reasons, ports, MSRs, functions)",
    ),
    ("Up/Down", "select a row: its rate is drawn below the table"),
    ("other", "refresh now"),
];

fn draw_help(f: &mut Frame, body: Rect) {
    let mut lines = vec![Line::from("")];
    for (k, what) in HELP {
        lines.push(Line::from(format!(" {k:>8}  {what}")));
    }
    f.render_widget(Paragraph::new(lines), body);
}

/// Options of the live TUI.
#[derive(Debug, Clone)]
pub struct Options {
    pub tracefs: PathBuf,
    pub catalog: Catalog,
    pub scope: Scope,
    pub view: View,
    pub interval: Duration,
    pub duration: Option<Duration>,
}

fn scope_of(query: Option<&str>) -> Result<Scope, TopError> {
    match query {
        None => Ok(Scope::System),
        Some(q) => crate::vms::find(q)
            .map(Scope::Vm)
            .ok_or_else(|| TopError::NoSuchVm(q.to_string())),
    }
}

fn start(opts: &Options, scope: &Scope) -> Result<(Collector, Model), TopError> {
    let mut col = Collector::open(&opts.tracefs, &opts.catalog, scope, opts.view.drilldown)?;
    let first = col.read()?;
    let mut model = Model::new(
        opts.catalog.mode,
        scope.describe(),
        opts.catalog.keys(),
        &first.counts,
    );
    model.update(&first.counts, &first.per_target, 0.0);
    Ok((col, model))
}

/// Runs the TUI until `q`, a signal (`stop` returns true) or the duration ends. The
/// terminal is restored before returning, also on errors and panics.
pub fn run(opts: Options, stop: impl Fn() -> bool) -> Result<(), TopError> {
    // Open the counters before touching the terminal, so that errors print normally.
    let (mut col, model) = start(&opts, &opts.scope)?;
    let note = col.fd_note();
    let mut terminal = ratatui::init();
    let result = live_loop(&mut terminal, &opts, &mut col, model, note, stop);
    ratatui::restore();
    result
}

fn live_loop(
    terminal: &mut ratatui::DefaultTerminal,
    opts: &Options,
    col: &mut Collector,
    model: Model,
    note: Option<String>,
    stop: impl Fn() -> bool,
) -> Result<(), TopError> {
    let mut app = App::new(model, opts.view.clone(), opts.interval);
    app.message = note;
    let began = Instant::now();
    let mut last = Instant::now();
    let mut vm_totals: Option<VmTotals> = None;
    let mut vm_last = Instant::now();
    let mut reset_pending = false;
    loop {
        terminal
            .draw(|f| draw(f, &app))
            .map_err(|e| TopError::Terminal(e.to_string()))?;
        if stop() || opts.duration.is_some_and(|d| began.elapsed() >= d) {
            kvmscope_capture::guard::acknowledge_stop();
            return Ok(());
        }
        let wait = app
            .interval
            .saturating_sub(last.elapsed())
            .min(Duration::from_millis(100));
        let mut refresh = last.elapsed() >= app.interval;
        if event::poll(wait).map_err(|e| TopError::Terminal(e.to_string()))? {
            if let Event::Key(k) = event::read().map_err(|e| TopError::Terminal(e.to_string()))? {
                match app.key(k) {
                    Action::Quit => return Ok(()),
                    Action::Refresh => refresh = true,
                    Action::Drilldown(on) => {
                        let was = col.children_on();
                        match col.set_children(on) {
                            // Children count from now: restart every total with them, so
                            // that a child's share of its parent means something.
                            Ok(()) if on && !was => {
                                refresh = true;
                                reset_pending = true;
                            }
                            Ok(()) => {}
                            Err(e) => {
                                app.message = Some(e.to_string());
                                app.view.drilldown = col.children_on();
                            }
                        }
                    }
                    Action::None => {}
                    Action::ListVms => {
                        match VmTotals::open(&opts.tracefs, &opts.catalog, crate::vms::list()) {
                            Ok(mut t) => {
                                app.vms = t.read(0.0);
                                vm_last = Instant::now();
                                vm_totals = Some(t);
                            }
                            Err(e) => app.message = Some(e.to_string()),
                        }
                    }
                    Action::Scope(q) => {
                        match scope_of(q.as_deref()).and_then(|s| start(opts, &s)) {
                            Ok((c, m)) => {
                                // Closing counters takes a kernel grace period per tracepoint:
                                // let the old set go away off this thread.
                                let old = std::mem::replace(col, c);
                                std::thread::spawn(move || drop(old));
                                let (view, interval) = (app.view.clone(), app.interval);
                                app = App::new(m, view, interval);
                                last = Instant::now();
                                vm_totals = None;
                            }
                            Err(e) => app.message = Some(e.to_string()),
                        }
                    }
                }
            }
        }
        if refresh {
            col.rescan()?;
            let s = col.read()?;
            let secs = last.elapsed().as_secs_f64();
            last = Instant::now();
            app.model.update(&s.counts, &s.per_target, secs);
            if std::mem::take(&mut reset_pending) {
                app.model.reset();
            }
            if let Some(t) = vm_totals.as_mut().filter(|_| app.screen == Screen::Vms) {
                app.vms = t.read(vm_last.elapsed().as_secs_f64());
                vm_last = Instant::now();
            }
        }
    }
}
