package grafana

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Limits of the harness. Every wait is bounded so that a broken engine or
// Prometheus fails the test instead of hanging it.
const (
	startTimeoutMax = 30 * time.Second // a process answers its readiness probe
	scrapeWaitMax   = 20 * time.Second // scrapes and rule evaluations catch up
	httpTimeoutMax  = 10 * time.Second // one HTTP call
	pollInterval    = 100 * time.Millisecond
)

var httpClient = &http.Client{Timeout: httpTimeoutMax}

// freeAddr returns a loopback address with a port free a moment ago.
func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startProcess starts cmd with its output in a log file, and kills and
// reaps it at cleanup. The log is printed if the test failed.
func startProcess(t testing.TB, name string, cmd *exec.Cmd) {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		f.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			if len(b) > 8000 {
				b = b[len(b)-8000:]
			}
			t.Logf("%s log (tail):\n%s", name, b)
		}
	})
}

// waitHTTP polls url until it answers 200 or timeout passes.
func waitHTTP(t testing.TB, what, url string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		resp, err := httpClient.Get(url)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		time.Sleep(pollInterval)
	}
	t.Fatalf("%s not ready at %s after %v: %s", what, url, timeout, last)
}

// prom is a Prometheus started by a test.
type prom struct {
	base string // http://127.0.0.1:port
}

// startPrometheus runs a real Prometheus scraping target (host:port, job
// "ocs", every second, with bearer as its token if not empty) and
// evaluating ruleFiles every second, with its TSDB in a temporary
// directory and its UI on a free loopback port.
func startPrometheus(t testing.TB, target, bearer string, ruleFiles ...string) *prom {
	t.Helper()
	bin := requireTool(t, "prometheus")
	dir := t.TempDir()
	var rules strings.Builder
	for _, f := range ruleFiles {
		abs, err := filepath.Abs(f)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&rules, "  - %q\n", abs)
	}
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
%sscrape_configs:
  - job_name: ocs
    static_configs:
      - targets: [%q]
`, rules.String(), target)
	if bearer != "" {
		cfg += fmt.Sprintf("    authorization:\n      credentials: %q\n", bearer)
	}
	if len(ruleFiles) == 0 {
		cfg = strings.Replace(cfg, "rule_files:\n", "", 1)
	}
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	startProcess(t, "prometheus", exec.Command(bin,
		"--config.file="+cfgPath,
		"--web.listen-address="+addr,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--log.level=warn",
	))
	p := &prom{base: "http://" + addr}
	waitHTTP(t, "prometheus", p.base+"/-/ready", startTimeoutMax)
	return p
}

// apiResponse is the envelope of Prometheus's HTTP API.
type apiResponse struct {
	Status    string          `json:"status"`
	ErrorType string          `json:"errorType"`
	Error     string          `json:"error"`
	Data      json.RawMessage `json:"data"`
}

func (p *prom) get(path string, params url.Values) (json.RawMessage, error) {
	resp, err := httpClient.Get(p.base + path + "?" + params.Encode())
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var r apiResponse
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&r); err != nil {
		return nil, fmt.Errorf("%s: %s: %w", path, resp.Status, err)
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("%s: %s", r.ErrorType, r.Error)
	}
	return r.Data, nil
}

// series is one element of an instant query result.
type series struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

// query evaluates expr now and returns its series (a scalar counts as one).
func (p *prom) query(expr string) ([]series, error) {
	data, err := p.get("/api/v1/query", url.Values{"query": {expr}})
	if err != nil {
		return nil, err
	}
	var res struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	}
	if err := json.Unmarshal(data, &res); err != nil {
		return nil, err
	}
	switch res.ResultType {
	case "vector":
		var s []series
		err := json.Unmarshal(res.Result, &s)
		return s, err
	case "scalar", "string":
		return []series{{}}, nil
	default:
		return nil, fmt.Errorf("unexpected result type %q", res.ResultType)
	}
}

// waitQuery polls until expr returns at least one series.
func (p *prom) waitQuery(t testing.TB, expr string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		s, err := p.query(expr)
		if err == nil && len(s) > 0 {
			return
		}
		last = fmt.Sprintf("%d series, err %v", len(s), err)
		time.Sleep(pollInterval)
	}
	t.Fatalf("prometheus: %s still empty after %v (%s)", expr, timeout, last)
}

// rule is one alerting or recording rule as Prometheus loaded it.
type rule struct {
	Name           string    `json:"name"`
	Query          string    `json:"query"`
	Health         string    `json:"health"`
	LastError      string    `json:"lastError"`
	LastEvaluation time.Time `json:"lastEvaluation"`
}

// rules returns every rule Prometheus loaded. Reading the rules back from
// Prometheus rather than from alerts.yml means we check exactly what it
// parsed (the module has no YAML parser either).
func (p *prom) rules() ([]rule, error) {
	data, err := p.get("/api/v1/rules", nil)
	if err != nil {
		return nil, err
	}
	var res struct {
		Groups []struct {
			Rules []rule `json:"rules"`
		} `json:"groups"`
	}
	if err := json.Unmarshal(data, &res); err != nil {
		return nil, err
	}
	var out []rule
	for _, g := range res.Groups {
		out = append(out, g.Rules...)
	}
	return out, nil
}

// waitRulesEvaluated waits until every rule has been evaluated after since.
func (p *prom) waitRulesEvaluated(t testing.TB, since time.Time, timeout time.Duration) []rule {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		rs, err := p.rules()
		if err != nil {
			t.Fatalf("prometheus rules: %v", err)
		}
		done := len(rs) > 0
		for _, r := range rs {
			done = done && r.LastEvaluation.After(since)
		}
		if done {
			return rs
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus: %d rules not all evaluated after %v", len(rs), timeout)
		}
		time.Sleep(pollInterval)
	}
}

// checkItem is one expression to prove against live data.
type checkItem struct {
	where string
	expr  string // variables already substituted
	// condition marks an alert expression: it may rightly return nothing
	// while the alert is quiet, so only its selectors must match series.
	condition bool
}

// check evaluates every item and returns one line per problem:
//   - the expression is not valid PromQL or fails to evaluate;
//   - a dashboard expression returns no series (the panel would be empty);
//   - any vector selector inside an expression, queried on its own, matches
//     no series. This is what tells "the alert is quiet" apart from "the
//     alert watches a metric (or label value) that does not exist", and it
//     also catches a missing metric hidden behind `or` in a panel.
//
// It also returns the metric names of all selectors, for the /metrics check.
func (p *prom) check(items []checkItem) (problems []string, names map[string]bool) {
	names = map[string]bool{}
	selectorSeen := map[string]string{} // selector text -> problem ("" = fine)
	for _, it := range items {
		res, err := p.query(it.expr)
		switch {
		case err != nil:
			problems = append(problems, fmt.Sprintf("%s: query error: %v\n\t%s", it.where, err, it.expr))
			continue
		case len(res) == 0 && !it.condition:
			problems = append(problems, fmt.Sprintf("%s: no series\n\t%s", it.where, it.expr))
		}
		sels, err := metricSelectors(it.expr)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v\n\t%s", it.where, err, it.expr))
			continue
		}
		for _, s := range sels {
			if s.name != "" {
				names[s.name] = true
			}
			msg, seen := selectorSeen[s.text]
			if !seen {
				res, err := p.query(s.text)
				switch {
				case err != nil:
					msg = fmt.Sprintf("selector %s: %v", s.text, err)
				case len(res) == 0:
					msg = fmt.Sprintf("selector %s matches no series", s.text)
				}
				selectorSeen[s.text] = msg
			}
			if msg != "" {
				problems = append(problems, fmt.Sprintf("%s: %s", it.where, msg))
			}
		}
	}
	return problems, names
}

// syntheticMetrics are series Prometheus makes itself for each target and
// for alerts: they are never in an exporter's /metrics.
var syntheticMetrics = map[string]bool{
	"up": true, "scrape_duration_seconds": true, "scrape_samples_scraped": true,
	"scrape_samples_post_metric_relabeling": true, "scrape_series_added": true,
	"ALERTS": true, "ALERTS_FOR_STATE": true,
}

// exposedNames returns the sample names in a text exposition (histogram
// buckets, sums and counts appear under their own names, as PromQL sees them).
func exposedNames(text string) map[string]bool {
	out := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		if i := strings.IndexAny(line, "{ "); i > 0 {
			out[line[:i]] = true
		}
	}
	return out
}

// missingFromExposition returns the referenced names not in the exposition.
func missingFromExposition(referenced, exposed map[string]bool) []string {
	var out []string
	for n := range referenced {
		if !exposed[n] && !syntheticMetrics[n] {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

// dashboardItems substitutes vars into every dashboard expression.
func dashboardItems(t testing.TB, ds map[string]dashboard, vars map[string]string) []checkItem {
	t.Helper()
	var out []checkItem
	for _, pe := range dashboardExprs(ds) {
		e, err := expandVars(pe.expr, vars)
		if err != nil {
			t.Fatalf("%s: %v", pe.where, err)
		}
		out = append(out, checkItem{where: pe.where, expr: e})
	}
	return out
}

// ruleItems checks each loaded rule's health and lists its expression.
func ruleItems(rs []rule) (items []checkItem, problems []string) {
	for _, r := range rs {
		where := "alert " + r.Name
		if r.Health != "ok" {
			problems = append(problems, fmt.Sprintf("%s: Prometheus reports health %q: %s", where, r.Health, r.LastError))
		}
		items = append(items, checkItem{where: where, expr: r.Query, condition: true})
	}
	return items, problems
}

// TestHarnessReportsBogusMetric proves the checker against a tiny fake
// exporter: a dashboard or alert that references a metric (or a label
// value) the exporter does not have, or holds a syntax error, is reported,
// and the sound ones are not. Without this, a checker that never complains
// would make TestDashboardsAgainstRealPrometheus pass vacuously.
func TestHarnessReportsBogusMetric(t *testing.T) {
	t.Parallel()
	requireTool(t, "prometheus")
	const exposition = "# TYPE demo_requests_total counter\n" +
		"demo_requests_total{result=\"ok\"} %d\n" +
		"# TYPE demo_inflight gauge\ndemo_inflight 3\n"
	var scrapes atomic.Int64
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, exposition, 10*scrapes.Add(1))
	}), ReadHeaderTimeout: httpTimeoutMax}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })

	dir := t.TempDir()
	rulesPath := filepath.Join(dir, "rules.yml")
	if err := os.WriteFile(rulesPath, []byte(`groups:
  - name: demo
    rules:
      - alert: Good
        expr: sum(rate(demo_requests_total{result="ok"}[5s])) > 1e9
      - alert: BogusMetric
        expr: sum(rate(demo_missing_total[5s])) > 0
      - alert: BogusLabel
        expr: sum(rate(demo_requests_total{result="error"}[5s])) > 0
`), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startPrometheus(t, l.Addr().String(), "", rulesPath)
	start := time.Now()
	p.waitQuery(t, `count_over_time(demo_requests_total[1m]) >= 3`, scrapeWaitMax)
	rs := p.waitRulesEvaluated(t, start, scrapeWaitMax)

	vars := map[string]string{"job": "ocs", "__rate_interval": "30s"}
	ds := map[string]dashboard{"demo.json": {Panels: []panel{
		{ID: 1, Title: "good", Targets: []target{{RefID: "A", Expr: `sum(rate(demo_requests_total{job=~"$job"}[$__rate_interval]))`}}},
		{ID: 2, Title: "good or missing", Targets: []target{{RefID: "A", Expr: `demo_inflight or demo_hidden`}}},
		{ID: 3, Title: "missing", Targets: []target{{RefID: "A", Expr: `sum(rate(demo_bogus_total[$__rate_interval]))`}}},
		{ID: 4, Title: "syntax", Targets: []target{{RefID: "A", Expr: `sum(rate(demo_requests_total[1m])`}}},
	}}}
	items := dashboardItems(t, ds, vars)
	ruleChecks, problems := ruleItems(rs)
	got, names := p.check(append(items, ruleChecks...))
	problems = append(problems, got...)

	report := strings.Join(problems, "\n")
	t.Logf("checker report:\n%s", report)
	for _, want := range []string{
		`panel 2 "good or missing" target A: selector demo_hidden matches no series`,
		`panel 3 "missing" target A: no series`,
		`panel 3 "missing" target A: selector demo_bogus_total matches no series`,
		`panel 4 "syntax" target A: query error`,
		`alert BogusMetric: selector demo_missing_total matches no series`,
		`alert BogusLabel: selector demo_requests_total{result="error"} matches no series`,
	} {
		if !strings.Contains(report, want) {
			t.Errorf("checker did not report %q", want)
		}
	}
	for _, quiet := range []string{`"good"`, "alert Good", "demo_inflight"} {
		if strings.Contains(report, quiet) {
			t.Errorf("checker reported the sound %s", quiet)
		}
	}
	missing := missingFromExposition(names, exposedNames(fmt.Sprintf(exposition, 1)))
	if want := []string{"demo_bogus_total", "demo_hidden", "demo_missing_total"}; !slices.Equal(missing, want) {
		t.Errorf("missing from /metrics = %q, want %q", missing, want)
	}
}

// promtoolCheckMetrics lints an exposition with `promtool check metrics`.
func promtoolCheckMetrics(t testing.TB, exposition string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), toolTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, requireTool(t, "promtool"), "check", "metrics")
	cmd.Stdin = strings.NewReader(exposition)
	out, err := cmd.CombinedOutput()
	return string(out), err
}
