// Command spincaddy is bin/caddy plus bench_spin, a handler that does
// nothing but burn CPU for a set time before passing the request on: a
// control for the proxied-page case of make bench. If a route with
// `bench_spin 4us` costs about 4µs more CPU per request than the same
// route without it, extra work on the request path costs what it costs,
// and a larger difference with b2s_collect is the plugin's own.
//
//	go build -o bin/spincaddy ./bench/cmd/spincaddy
//
//	http://:8080 {
//		bench_spin 4us
//		reverse_proxy 127.0.0.1:8081
//	}
package main

import (
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/b2scom/b2s-edge/caddymodule"
)

func init() {
	caddy.RegisterModule(Spin{})
	httpcaddyfile.RegisterHandlerDirective("bench_spin", func(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
		s := new(Spin)
		h.Next()
		if h.NextArg() {
			d, err := time.ParseDuration(h.Val())
			if err != nil {
				return nil, err
			}
			s.D = d
		}
		return s, nil
	})
	httpcaddyfile.RegisterDirectiveOrder("bench_spin", httpcaddyfile.Before, "header")
}

// Spin burns CPU for D, then calls the next handler.
type Spin struct {
	D time.Duration `json:"d,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (Spin) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "http.handlers.bench_spin", New: func() caddy.Module { return new(Spin) }}
}

var sink uint64 // keeps the loop from being optimised away

// ServeHTTP spins, then passes the request on.
func (s Spin) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	end := time.Now().Add(s.D)
	x := uint64(1)
	for time.Now().Before(end) {
		for i := 0; i < 50; i++ {
			x = x*6364136223846793005 + 1442695040888963407
		}
	}
	sink += x
	return next.ServeHTTP(w, r)
}

func main() { caddycmd.Main() }
