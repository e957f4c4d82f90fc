// Package grafana holds the operations view of the engine: Grafana
// provisioning and dashboards (dashboards/, provisioning/), Prometheus alert
// rules (alerts.yml, tested by alerts_test.yml) and an example scrape
// configuration (prometheus.yml). See README.md for how to run them.
//
// The package has no code of its own. Its tests keep the dashboards, the
// alerts and the engine's /metrics from drifting apart: every PromQL
// expression is evaluated by a real Prometheus scraping a real `ocs serve`
// (promql_live_test.go), with promtool checking the rules and the exposition.
package grafana
