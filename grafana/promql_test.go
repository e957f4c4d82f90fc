package grafana

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// selector is one instant vector selector found in a PromQL expression:
// a metric name with its label matchers, without range or offset.
type selector struct {
	name string // metric name; "" for a bare {__name__=…} selector
	text string // name{matchers} as written, queryable on its own
}

// nonMetricIdents are PromQL words that look like identifiers but never
// name a metric: aggregation operators (which may be followed by `by`
// rather than a parenthesis), set and comparison keywords, and the
// number literals Inf and NaN. Functions need no entry: an identifier
// followed by "(" is always a call.
var nonMetricIdents = map[string]bool{
	"sum": true, "min": true, "max": true, "avg": true, "group": true, "stddev": true,
	"stdvar": true, "count": true, "count_values": true, "bottomk": true, "topk": true,
	"quantile": true, "limitk": true, "limit_ratio": true,
	"and": true, "or": true, "unless": true, "bool": true, "offset": true, "atan2": true,
	"inf": true, "nan": true,
}

// labelListKeywords are followed by a parenthesised list of label names.
var labelListKeywords = map[string]bool{
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
}

// metricSelectors returns every vector selector in expr, in order, so that
// a test can ask Prometheus about each metric on its own. We cannot use
// Prometheus's parser (the module is not a dependency, and Debian's 2.42
// has no /api/v1/parse_query), so this is a small lexer that knows just
// enough PromQL: strings, matcher blocks, ranges, label lists after
// by/without/on/ignoring/group_*, function calls and keywords. It errs on
// the side of reporting: an identifier it cannot classify is a metric.
func metricSelectors(expr string) ([]selector, error) {
	var out []selector
	i, n := 0, len(expr)
	for i < n {
		c := expr[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '#':
			for i < n && expr[i] != '\n' {
				i++
			}
		case c == '"' || c == '\'' || c == '`':
			end, err := skipString(expr, i)
			if err != nil {
				return nil, err
			}
			i = end
		case c == '{':
			end, err := skipBlock(expr, i, '{', '}')
			if err != nil {
				return nil, err
			}
			out = append(out, selector{text: expr[i:end]})
			i = end
		case c == '[':
			end, err := skipBlock(expr, i, '[', ']')
			if err != nil {
				return nil, err
			}
			i = end
		case isDigit(c) || (c == '.' && i+1 < n && isDigit(expr[i+1])):
			i = skipNumber(expr, i)
		case isIdentStart(c):
			start := i
			for i < n && isIdentChar(expr[i]) {
				i++
			}
			word := expr[start:i]
			next := skipSpace(expr, i)
			lower := strings.ToLower(word)
			switch {
			case labelListKeywords[lower]:
				if next < n && expr[next] == '(' {
					end, err := skipBlock(expr, next, '(', ')')
					if err != nil {
						return nil, err
					}
					i = end
				}
			case next < n && expr[next] == '(':
				// A function call or aggregation: its arguments follow.
			case nonMetricIdents[lower]:
			default:
				sel := selector{name: word, text: word}
				if next < n && expr[next] == '{' {
					end, err := skipBlock(expr, next, '{', '}')
					if err != nil {
						return nil, err
					}
					sel.text = word + expr[next:end]
					i = end
				}
				out = append(out, sel)
			}
		default:
			i++
		}
	}
	return out, nil
}

func isDigit(c byte) bool      { return c >= '0' && c <= '9' }
func isIdentStart(c byte) bool { return c == '_' || c == ':' || (c|0x20 >= 'a' && c|0x20 <= 'z') }
func isIdentChar(c byte) bool  { return isIdentStart(c) || isDigit(c) }

func skipSpace(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r') {
		i++
	}
	return i
}

// skipNumber passes a number or duration: 0.99, 1e-3, 0x1f, 5m, 1h30m.
func skipNumber(s string, i int) int {
	for i < len(s) {
		c := s[i]
		switch {
		case isIdentChar(c) || c == '.':
			i++
		case (c == '+' || c == '-') && (s[i-1] == 'e' || s[i-1] == 'E') && !strings.ContainsAny(s[:i], "xX"):
			i++
		default:
			return i
		}
	}
	return i
}

// skipString returns the index after the string literal starting at i.
func skipString(s string, i int) (int, error) {
	q := s[i]
	for j := i + 1; j < len(s); j++ {
		switch {
		case s[j] == '\\' && q != '`':
			j++
		case s[j] == q:
			return j + 1, nil
		}
	}
	return 0, fmt.Errorf("unterminated string at offset %d", i)
}

// skipBlock returns the index after the block opened at i, skipping strings
// inside it. Blocks of the same kind do not nest in PromQL except (), which
// we only skip for label lists.
func skipBlock(s string, i int, open, close byte) (int, error) {
	depth := 0
	for j := i; j < len(s); j++ {
		switch c := s[j]; c {
		case '"', '\'', '`':
			end, err := skipString(s, j)
			if err != nil {
				return 0, err
			}
			j = end - 1
		case open:
			depth++
		case close:
			depth--
			if depth == 0 {
				return j + 1, nil
			}
		}
	}
	return 0, fmt.Errorf("unterminated %q at offset %d", open, i)
}

func TestMetricSelectors(t *testing.T) {
	cases := []struct {
		expr string
		want []string // selector texts
	}{
		{`up`, []string{`up`}},
		{`up{job="ocs"} == 0`, []string{`up{job="ocs"}`}},
		{`sum by (job, instance) (rate(ocs_requests_total{result="error"}[5m])) / sum by (job, instance) (rate(ocs_requests_total[5m])) > 0.01`,
			[]string{`ocs_requests_total{result="error"}`, `ocs_requests_total`}},
		{`histogram_quantile(0.99, sum by (le) (rate(a_bucket{x=~"nchf|tmf"}[$__rate_interval])))`,
			[]string{`a_bucket{x=~"nchf|tmf"}`}},
		{`sum(rate(x_total[5m])) by (le) and on (job) count without (instance) (y) unless group_left (z) w`,
			[]string{`x_total`, `y`, `w`}},
		{`increase(t_total[1h] offset 15m) >= 12 unless sum(increase(t_total[15m])) > 0`,
			[]string{`t_total`, `t_total`}},
		{`max_over_time(g[5m:1m]) * 1e-3 + Inf - NaN + 0x1f + 1h30m`, []string{`g`}},
		{`label_replace(m{a="}{[("}, "dst", "$1", "src", "(.*)")`, []string{`m{a="}{[("}`}},
		{`{__name__=~"ocs_.+"}`, []string{`{__name__=~"ocs_.+"}`}},
		{"a # comment b\n+ c:recorded", []string{`a`, `c:recorded`}},
		{`topk(5, sum without (x) (m2)) @ start()`, []string{`m2`}},
		{`vector(1)`, nil},
	}
	for _, tc := range cases {
		sels, err := metricSelectors(tc.expr)
		if err != nil {
			t.Errorf("metricSelectors(%q): %v", tc.expr, err)
			continue
		}
		var got []string
		for _, s := range sels {
			got = append(got, s.text)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("metricSelectors(%q) = %q, want %q", tc.expr, got, tc.want)
		}
	}
	for _, bad := range []string{`m{a="b"`, `rate(m[5m)`, `m{a="b}`} {
		if _, err := metricSelectors(bad); err == nil {
			t.Errorf("metricSelectors(%q): no error for malformed input", bad)
		}
	}
}

// FuzzMetricSelectors: the lexer reads files anyone may edit; it must not
// panic or loop on any input, and whatever it returns must be a substring
// of the input that starts with the name it reports.
func FuzzMetricSelectors(f *testing.F) {
	for _, s := range []string{`up`, `sum by (le) (rate(a{b="c"}[5m]))`, `{x="`, `1e-`, `a[`, "`"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, expr string) {
		sels, err := metricSelectors(expr)
		if err != nil {
			return
		}
		for _, s := range sels {
			if !strings.Contains(expr, s.text) || !strings.HasPrefix(s.text, s.name) {
				t.Fatalf("selector %+v is not part of %q", s, expr)
			}
		}
	})
}
