package bench

import (
	"bytes"
	"fmt"
	"image/color"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// Machine is what a reader needs to compare figures across runs.
type Machine struct {
	CPUs      int
	Memory    string
	Kernel    string
	GoVersion string
	Commit    string
}

// MachineFacts reads the facts of this machine and the git commit of dir.
func MachineFacts(dir string) Machine {
	m := Machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), Memory: "unknown", Kernel: "unknown", Commit: "unknown"}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				var kb int64
				if _, err := fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), &kb); err == nil {
					m.Memory = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
				}
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = "Linux " + strings.TrimSpace(string(b))
	}
	cmd := exec.Command("git", "-C", dir, "rev-parse", "--short=12", "HEAD")
	if out, err := cmd.Output(); err == nil {
		m.Commit = strings.TrimSpace(string(out))
		if st, err := exec.Command("git", "-C", dir, "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(st) > 0 {
			m.Commit += " (with uncommitted changes)"
		}
	}
	return m
}

// Report is what WriteReport writes.
type Report struct {
	Command   string
	Machine   Machine
	Provision *ProvisionResult
	// Engine is the run against the target; Ceiling, if not nil, the same
	// scenario against the limit server, minutes apart.
	Engine  *Result
	Ceiling *Result
	// Notes are extra sentences (e.g. the server's memory).
	Notes []string
}

// Fraction returns the engine's throughput as a fraction of the ceiling's:
// the highest rate held for a ramp, the answered rate otherwise. 0 when
// there is no ceiling.
func (r *Report) Fraction() float64 {
	if r.Engine == nil || r.Ceiling == nil {
		return 0
	}
	e, c := headline(r.Engine), headline(r.Ceiling)
	if c == 0 {
		return 0
	}
	return e / c
}

// headline is the one throughput figure a run is compared by.
func headline(r *Result) float64 {
	if r.Config.Scenario == ScenarioRamp {
		return r.RampHeld
	}
	if len(r.Runs) == 0 {
		return 0
	}
	return r.Runs[0].Throughput()
}

// DefaultResultsDir is ./results/<timestamp>.
func DefaultResultsDir(now time.Time) string {
	return filepath.Join("results", now.Format("20060102-150405"))
}

// WriteReport writes report.md and its plots into dir and returns the path
// of report.md.
func WriteReport(dir string, r *Report) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("bench: report: %w", err)
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "# Benchmark report\n\n")
	fmt.Fprintf(&b, "- command: `%s`\n", r.Command)
	fmt.Fprintf(&b, "- machine: %d CPUs, %s memory, %s, %s\n", r.Machine.CPUs, r.Machine.Memory, r.Machine.Kernel, r.Machine.GoVersion)
	fmt.Fprintf(&b, "- commit: %s\n", r.Machine.Commit)
	if r.Engine != nil {
		fmt.Fprintf(&b, "- started: %s\n", r.Engine.Started.UTC().Format(time.RFC3339))
	}
	if p := r.Provision; p != nil {
		fmt.Fprintf(&b, "- provisioning: %d created, %d existed, in %s (%.0f/s)\n", p.Created, p.Existed, p.Elapsed.Round(time.Millisecond), p.Rate())
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "- %s\n", n)
	}
	if r.Ceiling != nil {
		fmt.Fprintf(&b, "\n**Engine throughput: %.1f%% of the ceiling** (%.0f/s vs %.0f/s %s).\n",
			100*r.Fraction(), headline(r.Engine), headline(r.Ceiling), headlineName(r.Engine))
		if len(r.Ceiling.Skipped) > len(r.Engine.Skipped) {
			fmt.Fprintf(&b, "The ceiling run skipped operations the limit server does not serve (%s): the fraction compares different mixes.\n",
				strings.Join(r.Ceiling.Skipped, "; "))
		}
		if r.Engine.Config.Rate > 0 && r.Engine.Config.Scenario != ScenarioRamp {
			b.WriteString("In open loop both servers are offered the same rate, so the fraction reaches 100% whenever both keep up: compare latencies here, and use closed loop (no --rate) or a ramp for the throughput ceiling.\n")
		}
	}
	for _, part := range []struct {
		name string
		res  *Result
	}{{"engine", r.Engine}, {"ceiling", r.Ceiling}} {
		if part.res == nil {
			continue
		}
		if err := writeResult(&b, dir, part.name, part.res); err != nil {
			return "", err
		}
	}
	path := filepath.Join(dir, "report.md")
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		return "", fmt.Errorf("bench: report: %w", err)
	}
	return path, nil
}

func headlineName(r *Result) string {
	if r.Config.Scenario == ScenarioRamp {
		return fmt.Sprintf("highest rate holding p99 ≤ %s", r.Config.RampP99)
	}
	return "answered"
}

func writeResult(b *bytes.Buffer, dir, name string, res *Result) error {
	cfg := &res.Config
	fmt.Fprintf(b, "\n## %s: %s against %s\n\n", name, cfg.Scenario, cfg.Target)
	mode := loopName(cfg.Rate, cfg.Concurrency)
	if cfg.Scenario == ScenarioRamp {
		mode = fmt.Sprintf("ramp of %s from %.0f/s by %.0f/s, %s a step, until p99 > %s", cfg.RampScenario, cfg.RampStart, cfg.RampStep, cfg.RampStepFor, cfg.RampP99)
	}
	fmt.Fprintf(b, "%s; %d subscribers; mix %s; %d session updates; top-up %s; cards of %s.\n\n", mode, cfg.Subscribers, cfg.mixOf(cfg.Scenario),
		cfg.SessionUpdates, cfg.TopUp, cfg.VoucherValue)
	for _, s := range res.Skipped {
		fmt.Fprintf(b, "- skipped %s\n", s)
	}
	if cfg.Scenario == ScenarioRamp {
		fmt.Fprintf(b, "Highest rate that held: **%.0f/s**.\n\n", res.RampHeld)
	}
	fmt.Fprintf(b, "| run | scheduled/s | answered/s | ok | refused | failed | missed | p50 | p90 | p99 | p99.9 | max |\n")
	fmt.Fprintf(b, "|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, s := range res.Runs {
		sched := "closed"
		if s.Rate > 0 {
			sched = fmt.Sprintf("%.0f", s.Rate)
		}
		fmt.Fprintf(b, "| %s | %s | %.0f | %d | %d | %d | %d | %s | %s | %s | %s | %s |\n", s.Name, sched, s.Throughput(),
			s.OK, s.Refused, s.Failed, s.Missed, ms(s.P50), ms(s.P90), ms(s.P99), ms(s.P999), ms(s.Max))
	}
	for _, s := range res.Runs {
		if s.FirstFailure != "" {
			fmt.Fprintf(b, "\nFirst failure of %s: `%s`\n", s.Name, s.FirstFailure)
		}
	}
	a := &res.Audit
	verdict := "**passed**"
	if !a.OK {
		verdict = "**FAILED**"
	}
	fmt.Fprintf(b, "\nAudit %s: owed %s → %s; acknowledged top-ups %s, card credits %s, event charges %s, session debits %s; %d balances checked (%d skipped), %d top-ups found in histories (%d of them card credits); %d unknown outcomes.\n",
		verdict, a.OwedBefore, a.OwedAfter, a.ToppedUp, a.VoucherCredited, a.Charged, a.SessionDebited, a.SubscribersChecked, a.SubscribersSkipped,
		a.TopUpsChecked, a.VouchersChecked, a.Uncertain)
	for _, p := range a.Problems {
		fmt.Fprintf(b, "- %s\n", p)
	}
	series := joinSeries(res.Runs)
	files := []struct {
		file string
		draw func(string) error
	}{
		{name + "-throughput.png", func(p string) error { return plotThroughput(p, series) }},
		{name + "-latency.png", func(p string) error { return plotLatency(p, series) }},
		{name + "-distribution.png", func(p string) error { return plotDistribution(p, res.Runs) }},
	}
	b.WriteString("\n")
	for _, f := range files {
		if err := f.draw(filepath.Join(dir, f.file)); err != nil {
			return fmt.Errorf("bench: plot %s: %w", f.file, err)
		}
		fmt.Fprintf(b, "![%s](%s)\n", f.file, f.file)
	}
	return nil
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }

// joinSeries concatenates the per-second points of consecutive runs (ramp
// steps) on one time axis.
func joinSeries(runs []Summary) []Point {
	var out []Point
	offset := 0
	for _, s := range runs {
		for _, p := range s.Series {
			p.Second += offset
			out = append(out, p)
		}
		offset += int(math.Ceil(s.Elapsed.Seconds()))
	}
	return out
}

var plotColors = []color.Color{
	color.RGBA{R: 31, G: 119, B: 180, A: 255}, color.RGBA{R: 255, G: 127, B: 14, A: 255},
	color.RGBA{R: 44, G: 160, B: 44, A: 255}, color.RGBA{R: 214, G: 39, B: 40, A: 255},
}

func addLine(p *plot.Plot, name string, i int, xys plotter.XYs) error {
	l, err := plotter.NewLine(xys)
	if err != nil {
		return err
	}
	l.Color = plotColors[i%len(plotColors)]
	l.Width = vg.Points(1.5)
	p.Add(l)
	p.Legend.Add(name, l)
	return nil
}

func plotThroughput(path string, series []Point) error {
	p := plot.New()
	p.Title.Text = "Throughput"
	p.X.Label.Text = "second"
	p.Y.Label.Text = "requests/s"
	ok, failed := make(plotter.XYs, len(series)), make(plotter.XYs, len(series))
	for i, pt := range series {
		ok[i] = plotter.XY{X: float64(pt.Second), Y: float64(pt.Answered())}
		failed[i] = plotter.XY{X: float64(pt.Second), Y: float64(pt.Failed)}
	}
	if len(series) == 0 {
		ok, failed = plotter.XYs{{}}, plotter.XYs{{}}
	}
	if err := addLine(p, "answered", 0, ok); err != nil {
		return err
	}
	if err := addLine(p, "failed", 3, failed); err != nil {
		return err
	}
	p.Legend.Top = true
	return p.Save(8*vg.Inch, 4*vg.Inch, path)
}

func plotLatency(path string, series []Point) error {
	p := plot.New()
	p.Title.Text = "Latency percentiles per second"
	p.X.Label.Text = "second"
	p.Y.Label.Text = "ms"
	names := []string{"p50", "p90", "p99", "max"}
	for j, name := range names {
		xys := make(plotter.XYs, 0, len(series))
		for _, pt := range series {
			v := [...]time.Duration{pt.P50, pt.P90, pt.P99, pt.Max}[j]
			xys = append(xys, plotter.XY{X: float64(pt.Second), Y: float64(v) / float64(time.Millisecond)})
		}
		if len(xys) == 0 {
			xys = plotter.XYs{{}}
		}
		if err := addLine(p, name, j, xys); err != nil {
			return err
		}
	}
	p.Legend.Top = true
	return p.Save(8*vg.Inch, 4*vg.Inch, path)
}

// plotDistribution draws latency by percentile on the "nines" axis
// (x = -log10(1-q)), the HdrHistogram way: the tail is as wide as the body.
func plotDistribution(path string, runs []Summary) error {
	p := plot.New()
	p.Title.Text = "Latency distribution"
	p.X.Label.Text = "percentile"
	p.Y.Label.Text = "ms"
	p.X.Tick.Marker = plot.ConstantTicks([]plot.Tick{{Value: 0, Label: "0%"}, {Value: 1, Label: "90%"},
		{Value: 2, Label: "99%"}, {Value: 3, Label: "99.9%"}, {Value: 4, Label: "99.99%"}, {Value: 5, Label: "99.999%"}})
	drawn := 0
	for i, s := range runs {
		if s.Histogram == nil || s.Histogram.TotalCount() == 0 {
			continue
		}
		var xys plotter.XYs
		for _, br := range s.Histogram.CumulativeDistribution() {
			q := br.Quantile / 100
			if q >= 0.99999 {
				q = 0.99999
			}
			xys = append(xys, plotter.XY{X: -math.Log10(1 - q), Y: float64(br.ValueAt) / 1000})
		}
		if err := addLine(p, s.Name, i, xys); err != nil {
			return err
		}
		drawn++
	}
	if drawn == 0 {
		if err := addLine(p, "no samples", 0, plotter.XYs{{}}); err != nil {
			return err
		}
	}
	p.Legend.Top = true
	p.Legend.Left = true
	return p.Save(8*vg.Inch, 4*vg.Inch, path)
}
