package httpapi

import (
	"encoding/json"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestOpenAPIMatchesRoutes keeps openapi.json and the router in step: every
// served route is documented with the roles it enforces, and every documented
// operation is served.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	var doc struct {
		OpenAPI string `json:"openapi"`
		Paths   map[string]map[string]struct {
			Roles     []string       `json:"x-roles"`
			Security  []any          `json:"security"`
			Responses map[string]any `json:"responses"`
		} `json:"paths"`
	}
	require.NoError(t, json.Unmarshal(openAPI, &doc))
	require.Equal(t, "3.1.0", doc.OpenAPI)

	documented := map[string][]string{}
	for path, methods := range doc.Paths {
		for method, o := range methods {
			documented[strings.ToUpper(method)+" "+path] = append([]string{}, o.Roles...)
			require.NotEmpty(t, o.Responses, "%s %s", method, path)
			require.Equal(t, len(o.Roles) > 0, len(o.Security) > 0, "%s %s: security iff roles", method, path)
		}
	}
	served := map[string][]string{}
	for _, r := range routes {
		names := []string{}
		for role, name := range roleNames {
			if name != "" && r.roles&(1<<role) != 0 {
				names = append(names, name)
			}
		}
		served[r.method+" "+r.pattern] = names
	}
	for k, roles := range served {
		doc, ok := documented[k]
		require.True(t, ok, "served but not documented: %s", k)
		sort.Strings(roles)
		sort.Strings(doc)
		require.Equal(t, roles, doc, "roles of %s", k)
	}
	for k := range documented {
		_, ok := served[k]
		require.True(t, ok, "documented but not served: %s", k)
	}
}
