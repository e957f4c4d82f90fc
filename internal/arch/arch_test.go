// Package arch holds the test that keeps the package map of STYLE.md §1
// true: imports point toward charging, and storage, actors and protocols
// never import each other. Only cmd wires them together.
package arch

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/ocs-engine/ocs/"

// forbidden maps a package prefix to the prefixes it must never import.
var forbidden = map[string][]string{
	"charging":  {"storage", "actors", "protocols", "bench", "cmd", "github.com/cockroachdb", "github.com/asynkron", "github.com/valyala", "github.com/prometheus", "net", "os"},
	"storage":   {"actors", "protocols", "bench", "cmd"},
	"actors":    {"storage", "protocols", "bench", "cmd"},
	"protocols": {"storage", "actors", "bench", "cmd"},
	"bench":     {"storage", "actors", "protocols", "cmd"},
	// flows sequences multi-step operations over interfaces it declares;
	// cmd wires the concrete stores and engine.
	"flows": {"storage", "actors", "protocols", "bench", "cmd"},
}

func TestForbiddenImports(t *testing.T) {
	out, err := exec.Command("go", "list", "-json=ImportPath,Imports", "github.com/ocs-engine/ocs/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	checked := 0
	for dec.More() {
		var p struct {
			ImportPath string
			Imports    []string
		}
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		rel := strings.TrimPrefix(p.ImportPath, module)
		for owner, bans := range forbidden {
			if rel != owner && !strings.HasPrefix(rel, owner+"/") {
				continue
			}
			checked++
			for _, imp := range p.Imports {
				for _, ban := range bans {
					target := module + ban
					if strings.Contains(ban, ".") || ban == "net" || ban == "os" {
						target = ban
					}
					if imp == target || strings.HasPrefix(imp, target+"/") {
						t.Errorf("%s imports %s: forbidden by STYLE.md §1", p.ImportPath, imp)
					}
				}
			}
		}
	}
	if checked < 4 {
		t.Fatalf("checked only %d packages: the module path or layout changed", checked)
	}
}
