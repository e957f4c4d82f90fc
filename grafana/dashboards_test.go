package grafana

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// dashboard is the part of Grafana's dashboard JSON model the tests read.
type dashboard struct {
	UID           string  `json:"uid"`
	Title         string  `json:"title"`
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []panel `json:"panels"`
	Templating    struct {
		List []variable `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID         int         `json:"id"`
	Type       string      `json:"type"`
	Title      string      `json:"title"`
	Datasource *datasource `json:"datasource"`
	GridPos    struct {
		H, W, X, Y int
	} `json:"gridPos"`
	Targets []target `json:"targets"`
	Panels  []panel  `json:"panels"` // a collapsed row holds its panels
}

type target struct {
	RefID      string      `json:"refId"`
	Expr       string      `json:"expr"`
	Datasource *datasource `json:"datasource"`
}

type datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type variable struct {
	Name       string      `json:"name"`
	Type       string      `json:"type"`
	Datasource *datasource `json:"datasource"`
	Definition string      `json:"definition"`
}

// panelExpr is one PromQL expression of a dashboard, with where it is.
type panelExpr struct {
	where string // file, panel and refId, for messages
	expr  string // as written, with $variables
}

const dashboardsDir = "dashboards"

// loadDashboards parses every dashboard JSON file in dir.
func loadDashboards(t testing.TB, dir string) map[string]dashboard {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no dashboards in %s (err %v)", dir, err)
	}
	out := make(map[string]dashboard, len(files))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d dashboard
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out[filepath.Base(f)] = d
	}
	return out
}

// allPanels returns the panels of d, rows' nested panels included.
func allPanels(ps []panel) []panel {
	var out []panel
	for _, p := range ps {
		out = append(out, p)
		out = append(out, allPanels(p.Panels)...)
	}
	return out
}

// dashboardExprs lists every target expression of every dashboard, in a
// stable order.
func dashboardExprs(ds map[string]dashboard) []panelExpr {
	var out []panelExpr
	names := make([]string, 0, len(ds))
	for name := range ds {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		for _, p := range allPanels(ds[name].Panels) {
			for _, tg := range p.Targets {
				out = append(out, panelExpr{
					where: fmt.Sprintf("%s panel %d %q target %s", name, p.ID, p.Title, tg.RefID),
					expr:  tg.Expr,
				})
			}
		}
	}
	return out
}

// grafanaBuiltins are the variables Grafana defines itself and that our
// dashboards may use.
var grafanaBuiltins = []string{"__rate_interval", "__interval", "__range"}

var varRef = regexp.MustCompile(`\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]`)

// expandVars substitutes Grafana's $name, ${name}, ${name:fmt} and [[name]]
// forms with vars, and fails on any variable vars does not define: a panel
// must not query with a literal "$foo".
func expandVars(expr string, vars map[string]string) (string, error) {
	var missing []string
	out := varRef.ReplaceAllStringFunc(expr, func(m string) string {
		sub := varRef.FindStringSubmatch(m)
		name := sub[1] + sub[2] + sub[3]
		v, ok := vars[name]
		if !ok {
			missing = append(missing, name)
			return m
		}
		return v
	})
	if len(missing) > 0 {
		return "", fmt.Errorf("undefined variables %q", missing)
	}
	return out, nil
}

// provisionedDatasourceUID reads the uid from the data source provisioning
// file (the module has no YAML parser; the file is ours and simple).
func provisionedDatasourceUID(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s+uid:\s*(\S+)\s*$`).FindAllStringSubmatch(string(b), -1)
	if len(m) != 1 {
		t.Fatalf("%s: want exactly one uid, found %d", path, len(m))
	}
	return strings.Trim(m[0][1], `"'`)
}

func TestDashboardsWellFormed(t *testing.T) {
	uid := provisionedDatasourceUID(t, "provisioning/datasources/prometheus.yaml")
	if docker := provisionedDatasourceUID(t, "provisioning-docker/datasources/prometheus.yaml"); docker != uid {
		t.Errorf("docker data source uid %q differs from %q", docker, uid)
	}
	ds := loadDashboards(t, dashboardsDir)
	if len(ds) < 5 {
		t.Errorf("want the overview, charging, top-ups, storage and runtime dashboards, have %d", len(ds))
	}
	uids := map[string]string{}
	for name, d := range ds {
		if d.UID == "" || d.Title == "" {
			t.Errorf("%s: uid and title are required", name)
		}
		if other, dup := uids[d.UID]; dup {
			t.Errorf("%s: uid %q also used by %s", name, d.UID, other)
		}
		uids[d.UID] = name
		if d.SchemaVersion < 36 {
			t.Errorf("%s: schemaVersion %d, want >= 36 (Grafana 9+; ours are 39)", name, d.SchemaVersion)
		}
		vars := map[string]string{}
		for _, b := range grafanaBuiltins {
			vars[b] = "1m"
		}
		for _, v := range d.Templating.List {
			vars[v.Name] = ".*"
			if v.Type == "query" && (v.Datasource == nil || v.Datasource.UID != uid) {
				t.Errorf("%s: variable %s: datasource must be uid %q", name, v.Name, uid)
			}
		}
		checkPanels(t, name, d, uid, vars)
	}
}

func checkPanels(t *testing.T, name string, d dashboard, uid string, vars map[string]string) {
	t.Helper()
	ids := map[int]bool{}
	queries := 0
	for _, p := range allPanels(d.Panels) {
		where := fmt.Sprintf("%s panel %d %q", name, p.ID, p.Title)
		if p.ID <= 0 || ids[p.ID] {
			t.Errorf("%s: panel id must be positive and unique", where)
		}
		ids[p.ID] = true
		if p.GridPos.W <= 0 || p.GridPos.H <= 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("%s: gridPos %+v outside the 24-column grid", where, p.GridPos)
		}
		if p.Type == "row" {
			continue
		}
		if p.Title == "" {
			t.Errorf("%s: panel without a title", where)
		}
		if len(p.Targets) == 0 {
			t.Errorf("%s: no targets", where)
		}
		if p.Datasource == nil || p.Datasource.UID != uid {
			t.Errorf("%s: panel datasource must be uid %q", where, uid)
		}
		refs := map[string]bool{}
		for _, tg := range p.Targets {
			queries++
			if tg.RefID == "" || refs[tg.RefID] {
				t.Errorf("%s: refId %q empty or repeated", where, tg.RefID)
			}
			refs[tg.RefID] = true
			if tg.Datasource != nil && tg.Datasource.UID != uid {
				t.Errorf("%s target %s: datasource uid %q, want %q", where, tg.RefID, tg.Datasource.UID, uid)
			}
			if strings.TrimSpace(tg.Expr) == "" {
				t.Errorf("%s target %s: empty expr", where, tg.RefID)
				continue
			}
			if _, err := expandVars(tg.Expr, vars); err != nil {
				t.Errorf("%s target %s: %v", where, tg.RefID, err)
			}
			sels, err := metricSelectors(tg.Expr)
			if err != nil || len(sels) == 0 {
				t.Errorf("%s target %s: no metric selector (err %v) in %s", where, tg.RefID, err, tg.Expr)
			}
		}
	}
	if queries == 0 {
		t.Errorf("%s: no queries", name)
	}
}

func TestExpandVars(t *testing.T) {
	vars := map[string]string{"job": "ocs", "__rate_interval": "30s"}
	got, err := expandVars(`rate(m{job=~"$job",a="${job}",b="${job:regex}",c="[[job]]"}[$__rate_interval])`, vars)
	want := `rate(m{job=~"ocs",a="ocs",b="ocs",c="ocs"}[30s])`
	if err != nil || got != want {
		t.Errorf("expandVars = %q, %v; want %q", got, err, want)
	}
	if _, err := expandVars(`m{instance=~"$instance"}`, vars); err == nil {
		t.Error("expandVars: an undefined $instance must be an error")
	}
}
