package browser

import (
	"fmt"
	"path/filepath"
	"strings"
)

// edgeConfig is the edge's Caddyfile as data. newEnv fills it with the
// defaults (defaultConfig); a test changes it through envOptions.configure
// before the edge starts. Every entry of a []string is one directive, which
// may span several lines (a block); render indents it.
type edgeConfig struct {
	// Global holds extra global options, e.g. "servers {\n\tprotocols h1\n}".
	Global []string
	// B2S holds extra options of the b2s app (the global b2s block).
	B2S []string
	// Sites are the site blocks, in order.
	Sites []*siteConfig
}

// siteConfig is one site block: host on the shared HTTPS port, proxied to
// an origin.
type siteConfig struct {
	Host string
	// Collect puts b2s_collect in front of everything else; CollectOptions
	// go in its block.
	Collect        bool
	CollectOptions []string
	// Directives come after b2s_collect and before the proxy, e.g. a
	// `handle /ads/* {...}` route or a header directive.
	Directives []string
	// Upstream is the origin the site proxies to; ProxyOptions go in the
	// block of its reverse_proxy.
	Upstream     *origin
	ProxyOptions []string
}

// defaultConfig is the main and sister sites with b2s_collect in front of
// their origins, and the advertiser's site with nothing of b2s.
func (e *env) defaultConfig() *edgeConfig {
	b2sProxy := []string{
		"header_up X-B2S-Cookie-ID {http.vars.b2s.cookie_id}",
		"header_up X-B2S-Event-ID {http.vars.b2s.event_id}",
	}
	return &edgeConfig{Sites: []*siteConfig{
		{Host: mainHost, Collect: true, Upstream: e.main, ProxyOptions: b2sProxy},
		{Host: sisterHost, Collect: true, Upstream: e.sister, ProxyOptions: b2sProxy},
		{Host: adHost, Upstream: e.ads},
	}}
}

// site returns the site block of host, or nil.
func (c *edgeConfig) site(host string) *siteConfig {
	for _, s := range c.Sites {
		if s.Host == host {
			return s
		}
	}
	return nil
}

// hosts are the names the edge serves.
func (c *edgeConfig) hosts() []string {
	var h []string
	for _, s := range c.Sites {
		h = append(h, s.Host)
	}
	return h
}

// render writes the Caddyfile. Sites get certificates from Caddy's local
// CA, kept in the test's directory like everything else Caddy writes; the
// CA is installed in no trust store.
func (c *edgeConfig) render(e *env) string {
	var b strings.Builder
	w := func(depth int, format string, args ...any) {
		line := fmt.Sprintf(format, args...)
		for l := range strings.SplitSeq(line, "\n") {
			b.WriteString(strings.Repeat("\t", depth) + l + "\n")
		}
	}
	w(0, "{")
	w(1, "admin %s", e.adminAddr)
	w(1, "persist_config off")
	w(1, "local_certs")
	w(1, "skip_install_trust")
	w(1, "default_bind 127.0.0.1")
	w(1, "http_port %d", e.httpPort)
	w(1, "https_port %d", e.port)
	w(1, "storage file_system %s", e.storage)
	for _, g := range c.Global {
		w(1, "%s", g)
	}
	w(1, "b2s {")
	w(2, "secret %s", e.secret)
	// Never the default spool under Caddy's data directory: one process
	// may hold a spool, and each test has its own.
	w(2, "spool %s", filepath.Join(e.dir, "spool"))
	for _, o := range c.B2S {
		w(2, "%s", o)
	}
	w(2, "kafka {")
	w(3, "brokers %s", e.brokerAddr)
	w(3, "topic %s", e.topic)
	w(2, "}")
	w(1, "}")
	w(0, "}")
	for _, s := range c.Sites {
		w(0, "")
		w(0, "%s {", s.Host)
		if s.Collect {
			if len(s.CollectOptions) == 0 {
				w(1, "b2s_collect")
			} else {
				w(1, "b2s_collect {")
				for _, o := range s.CollectOptions {
					w(2, "%s", o)
				}
				w(1, "}")
			}
		}
		for _, d := range s.Directives {
			w(1, "%s", d)
		}
		if len(s.ProxyOptions) == 0 {
			w(1, "reverse_proxy %s", s.Upstream.addr())
		} else {
			w(1, "reverse_proxy %s {", s.Upstream.addr())
			for _, o := range s.ProxyOptions {
				w(2, "%s", o)
			}
			w(1, "}")
		}
		w(1, "log {")
		w(2, "output file %s", filepath.Join(e.dir, "access.log"))
		w(1, "}")
		w(0, "}")
	}
	return b.String()
}
