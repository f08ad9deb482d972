package ops

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/b2scom/b2s-edge/internal/testproc"
)

const (
	rulesFile     = "configs/prometheus/b2s-edge.rules.yml"
	rulesTestFile = "configs/prometheus/b2s-edge.rules.test.yml"
)

// promtool returns the path of promtool, or fails the test saying how to
// install it.
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool is missing: install Debian's prometheus package, which ships it " +
			"(apt-get install prometheus, or make deps)")
	}
	return p
}

func runPromtool(t *testing.T, args ...string) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), promtool(t), args...)
	cmd.Dir = repoRoot
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	t.Logf("promtool %s:\n%s", strings.Join(args, " "), out)
}

func TestAlertRulesPassPromtoolCheck(t *testing.T) {
	runPromtool(t, "check", "rules", rulesFile)
}

func TestAlertRulesPassTheirUnitTests(t *testing.T) {
	runPromtool(t, "test", "rules", rulesTestFile)
}

type ruleFile struct {
	Groups []struct {
		Rules []struct {
			Alert  string            `yaml:"alert"`
			Expr   string            `yaml:"expr"`
			Labels map[string]string `yaml:"labels"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

type ruleTestFile struct {
	Tests []struct {
		AlertRuleTest []struct {
			Alertname string `yaml:"alertname"`
			ExpAlerts []struct {
				ExpLabels map[string]string `yaml:"exp_labels"`
			} `yaml:"exp_alerts"`
		} `yaml:"alert_rule_test"`
	} `yaml:"tests"`
}

func readYAML(t *testing.T, rel string, v any) {
	t.Helper()
	if err := yaml.Unmarshal([]byte(readRepoFile(t, rel)), v); err != nil {
		t.Fatalf("%s: %v", rel, err)
	}
}

// Every alert, in each of its severities, has a case where it fires, and
// a case where it stays silent.
func TestAlertRuleTestsCoverEveryAlertFiringAndNot(t *testing.T) {
	var rules ruleFile
	var tests ruleTestFile
	readYAML(t, rulesFile, &rules)
	readYAML(t, rulesTestFile, &tests)

	fires := map[string]bool{}  // alertname + "/" + severity
	silent := map[string]bool{} // alertname
	for _, g := range tests.Tests {
		for _, c := range g.AlertRuleTest {
			if len(c.ExpAlerts) == 0 {
				silent[c.Alertname] = true
			}
			for _, a := range c.ExpAlerts {
				fires[c.Alertname+"/"+a.ExpLabels["severity"]] = true
			}
		}
	}
	n := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			n++
			if r.Labels["severity"] == "" {
				t.Errorf("%s: alert %s has no severity label", rulesFile, r.Alert)
			}
			if key := r.Alert + "/" + r.Labels["severity"]; !fires[key] {
				t.Errorf("%s: no case where %s fires with severity %q", rulesTestFile, r.Alert, r.Labels["severity"])
			}
			if !silent[r.Alert] {
				t.Errorf("%s: no case where %s stays silent (exp_alerts: [])", rulesTestFile, r.Alert)
			}
		}
	}
	if n == 0 {
		t.Fatalf("%s: no alerting rule found", rulesFile)
	}
}

// The rules read metrics that the edge really exposes: a running edge,
// configured like the production example (a site block with a host, health
// checks on a listener of their own), shows every metric an alert
// expression names once it has served a page and a beacon. And the
// handlers B2SEdgeNotRecording leaves out are exactly those of the health
// checks: it counts every site request and no health check. A renamed
// metric or label fails here, not silently in production.
func TestAlertRulesReadMetricsTheEdgeExposes(t *testing.T) {
	var rules ruleFile
	readYAML(t, rulesFile, &rules)
	quoted := regexp.MustCompile(`"[^"]*"`)
	ident := regexp.MustCompile(`\b(?:b2s|caddy|process)_[a-z_]+\b`)
	want := map[string]bool{}
	var notRecording string
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			for _, name := range ident.FindAllString(quoted.ReplaceAllString(r.Expr, ""), -1) {
				want[name] = true
			}
			if r.Alert == "B2SEdgeNotRecording" {
				notRecording = r.Expr
			}
		}
	}
	if len(want) == 0 {
		t.Fatalf("%s: no metric name found in the expressions", rulesFile)
	}
	m := regexp.MustCompile(`caddy_http_requests_total\{handler!~"([^"]+)"\}`).FindStringSubmatch(notRecording)
	if m == nil {
		t.Fatalf(`%s: B2SEdgeNotRecording does not select caddy_http_requests_total{handler!~"..."}: %q`, rulesFile, notRecording)
	}
	excluded := regexp.MustCompile("^(?:" + m[1] + ")$") // PromQL regexps are anchored

	caddy := caddyBinary(t)
	dir := t.TempDir()
	admin, site, health, kafka := testproc.FreePort(t), testproc.FreePort(t), testproc.FreePort(t), testproc.FreePort(t) // nothing listens on kafka
	config := fmt.Sprintf(`{
	admin 127.0.0.1:%d
	metrics
	b2s {
		secret 0123456789abcdef0123456789abcdef
		spool %s
		kafka {
			brokers 127.0.0.1:%d
			flush_timeout 100ms
		}
	}
}

http://:%d {
	bind 127.0.0.1
	@lb_health {
		path /healthz
		remote_ip 127.0.0.0/8
	}
	b2s_health @lb_health
	respond /livez 200
	respond 404
}

http://127.0.0.1:%d {
	b2s_collect
	respond "ok"
}
`, admin, filepath.Join(dir, "spool"), kafka, health, site)
	cfg := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(cfg, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	edge := testproc.Start(t, "caddy", filepath.Join(dir, "caddy.log"),
		[]string{"HOME=" + dir, "XDG_DATA_HOME=" + dir, "XDG_CONFIG_HOME=" + dir},
		caddy, "run", "--config", cfg, "--adapter", "caddyfile")
	metricsURL := fmt.Sprintf("http://127.0.0.1:%d/metrics", admin)
	// The admin endpoint answers before the sites listen: wait for both.
	edge.WaitReady(t, 15*time.Second, func() error {
		if _, _, err := httpGet(metricsURL); err != nil {
			return err
		}
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", site), time.Second)
		if err != nil {
			return err
		}
		return c.Close()
	})
	siteRequests := []string{"/", "/b.gif?e=pageview"}
	for _, p := range siteRequests {
		if code, _, err := httpGet(fmt.Sprintf("http://127.0.0.1:%d%s", site, p)); err != nil || code != http.StatusOK {
			t.Fatalf("GET %s on the site: %d, %v", p, code, err)
		}
	}
	for _, hc := range []struct {
		path  string
		codes []int
	}{
		// 503 once the shipper has found Kafka unreachable, 200 before.
		{"/healthz", []int{http.StatusOK, http.StatusServiceUnavailable}},
		{"/livez", []int{http.StatusOK}},
		{"/other", []int{http.StatusNotFound}},
	} {
		if code, _, err := httpGet(fmt.Sprintf("http://127.0.0.1:%d%s", health, hc.path)); err != nil || !slices.Contains(hc.codes, code) {
			t.Fatalf("GET %s on the health listener: %d, %v; want one of %v", hc.path, code, err, hc.codes)
		}
	}
	_, body, err := httpGet(metricsURL)
	if err != nil {
		t.Fatal(err)
	}

	exposed := map[string]bool{}
	var counted, left float64 // site and health requests as B2SEdgeNotRecording sees them
	handler := regexp.MustCompile(`[{,]handler="([^"]*)"`)
	for line := range strings.Lines(body) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name := line[:strings.IndexAny(line, "{ ")]
		exposed[name] = true
		if name != "caddy_http_requests_total" {
			continue
		}
		h := handler.FindStringSubmatch(line)
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if h == nil || err != nil {
			t.Fatalf("cannot read %q", line)
		}
		if excluded.MatchString(h[1]) {
			left += v
		} else {
			counted += v
		}
	}
	var missing []string
	for name := range want {
		if !exposed[name] {
			missing = append(missing, name)
		}
	}
	slices.Sort(missing)
	if len(missing) > 0 {
		t.Errorf("%s reads metrics the edge does not expose: %s\n%s", rulesFile, strings.Join(missing, ", "), body)
	}
	if counted != float64(len(siteRequests)) || left != 3 {
		t.Errorf("B2SEdgeNotRecording counts %v requests and leaves out %v; want the %d site requests counted and the 3 health checks left out\n%s",
			counted, left, len(siteRequests), body)
	}
}

// httpGet returns the status and body of a GET.
func httpGet(url string) (int, string, error) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}
