package caddymodule

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	caddy.RegisterModule(Health{})
}

// DefaultMaxLag is how old the oldest unshipped record may get before the
// sink is reported degraded.
const DefaultMaxLag = caddy.Duration(time.Minute)

// Health is the `b2s_health` handler: it answers 200 while records flow to
// Kafka and 503 when the sink is degraded: the last write to Kafka failed,
// the oldest unshipped record is older than MaxLag, or the spool is more
// than 90% full. Records are kept in every one of these states; 503 tells a
// load balancer or an operator that they are piling up. Put it behind a
// matcher that only monitoring can reach.
type Health struct {
	// MaxLag is the shipper lag above which the sink is degraded.
	// Default 1m.
	MaxLag caddy.Duration `json:"max_lag,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (Health) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.b2s_health",
		New: func() caddy.Module { return new(Health) },
	}
}

// Provision sets defaults. The b2s app must be configured: without it
// there is no sink to report on.
func (h *Health) Provision(ctx caddy.Context) error {
	if _, err := getApp(ctx); err != nil {
		return fmt.Errorf("b2s_health: %v", err)
	}
	h.setDefaults()
	return nil
}

func (h *Health) setDefaults() {
	if h.MaxLag == 0 {
		h.MaxLag = DefaultMaxLag
	}
}

// Validate checks the configuration.
func (h *Health) Validate() error {
	if h.MaxLag < 0 {
		return fmt.Errorf("b2s_health: max_lag must be positive, e.g. max_lag 1m")
	}
	return nil
}

type healthReport struct {
	Status     string   `json:"status"`
	Reasons    []string `json:"reasons,omitempty"`
	LagSeconds float64  `json:"lag_seconds"`
	SpoolBytes int64    `json:"spool_bytes"`
}

// ServeHTTP implements caddyhttp.MiddlewareHandler.
func (h *Health) ServeHTTP(w http.ResponseWriter, _ *http.Request, _ caddyhttp.Handler) error {
	rep := healthReport{Status: "ok", LagSeconds: sinkLag().Seconds(), SpoolBytes: sinkBytes()}
	if sinkFailing() {
		rep.Reasons = append(rep.Reasons, "kafka_failing")
	}
	if rep.LagSeconds > time.Duration(h.MaxLag).Seconds() {
		rep.Reasons = append(rep.Reasons, "lag")
	}
	if m := sinkMax(); m > 0 && rep.SpoolBytes*10 > m*9 {
		rep.Reasons = append(rep.Reasons, "spool_nearly_full")
	}
	status := http.StatusOK
	if len(rep.Reasons) > 0 {
		rep.Status, status = "degraded", http.StatusServiceUnavailable
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(rep)
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Health)(nil)
	_ caddy.Validator             = (*Health)(nil)
	_ caddyhttp.MiddlewareHandler = (*Health)(nil)
)
