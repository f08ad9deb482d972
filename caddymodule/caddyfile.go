package caddymodule

import (
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/b2scom/b2s-edge/beacon"
)

// The Caddyfile's global b2s option (caddyfile_app.go) and the plugin's
// handler directives, in the order they run within a route.
func init() {
	httpcaddyfile.RegisterGlobalOption("b2s", parseGlobal)

	// Health checks are answered first, so they neither get a cookie nor
	// make records.
	httpcaddyfile.RegisterHandlerDirective("b2s_health", parseHealth)
	httpcaddyfile.RegisterDirectiveOrder("b2s_health", httpcaddyfile.Before, "header")

	// Before header, so that the cookie and the record see every response
	// the site sends, including those other handlers change, and the
	// beacon is answered before any rewrite, proxy or file server.
	httpcaddyfile.RegisterHandlerDirective("b2s_collect", parseCollect)
	httpcaddyfile.RegisterDirectiveOrder("b2s_collect", httpcaddyfile.Before, "header")

	// After header: inside b2s_collect (ordered before header), which
	// identifies and records the visitor from the request as sent and adds
	// its cookie outside the filter; the site's own header operations
	// (written in the same block, so outside b2s_isolate) are applied as
	// written. Before request_body, forward_auth, request_header, encode,
	// reverse_proxy, php_fastcgi and file_server: every handler that can
	// pass the request on to another party, or its answer back, runs
	// inside it.
	httpcaddyfile.RegisterHandlerDirective("b2s_isolate", parseIsolate)
	httpcaddyfile.RegisterDirectiveOrder("b2s_isolate", httpcaddyfile.After, "header")
}

// parseCollect sets up the handler from Caddyfile tokens:
//
//	b2s_collect [<matcher>] {
//		beacon <path>
//		script <path>
//		cookie_domain <domain>
//		cookie_prefix host|off
//		same_site lax|none
//		collect off [<path patterns...>]
//		client_hints <Sec-CH-UA-* hints...>
//	}
func parseCollect(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	c := new(Collect)
	err := c.UnmarshalCaddyfile(h.Dispenser)
	return c, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens (see parseCollect).
func (c *Collect) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "beacon":
			if !d.AllArgs(&c.Beacon) {
				return d.ArgErr()
			}
		case "script":
			if !d.AllArgs(&c.Script) {
				return d.ArgErr()
			}
		case "client_hints":
			hints := d.RemainingArgs()
			if len(hints) == 0 {
				return d.Errf("b2s_collect: client_hints needs at least one hint, e.g. client_hints %s", strings.Join(beacon.HintHeaders[:3], " "))
			}
			c.ClientHints = append(c.ClientHints, hints...)
		case "cookie_domain":
			if !d.AllArgs(&c.CookieDomain) {
				return d.ArgErr()
			}
		case "cookie_prefix":
			if !d.AllArgs(&c.CookiePrefix) {
				return d.ArgErr()
			}
			if c.CookiePrefix != "host" && c.CookiePrefix != "off" {
				return d.Errf("b2s_collect: cookie_prefix %q: want host or off", c.CookiePrefix)
			}
		case "same_site":
			if !d.AllArgs(&c.SameSite) {
				return d.ArgErr()
			}
			c.SameSite = strings.ToLower(c.SameSite)
			if c.SameSite != "lax" && c.SameSite != "none" {
				return d.Errf("b2s_collect: same_site %q: want lax or none (strict would give every visitor arriving from another site a new ID)", c.SameSite)
			}
		case "collect":
			if !d.NextArg() || d.Val() != "off" {
				return d.Err("b2s_collect: collect takes off, then optional path patterns: collect off [/kids/*...]")
			}
			c.CollectOff = true
			c.CollectOffPaths = append(c.CollectOffPaths, d.RemainingArgs()...)
		default:
			return d.Errf("b2s_collect: unrecognized option %q; want beacon, script, cookie_domain, cookie_prefix, same_site or collect", d.Val())
		}
	}
	return nil
}

func parseHealth(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	hl := new(Health)
	return hl, hl.UnmarshalCaddyfile(h.Dispenser)
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens:
//
//	b2s_health [<matcher>] {
//		max_lag <duration>
//	}
func (h *Health) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "max_lag":
			var s string
			if !d.AllArgs(&s) {
				return d.ArgErr()
			}
			dur, err := caddy.ParseDuration(s)
			if err != nil {
				return d.Errf("b2s_health: max_lag: %v; use a duration such as 1m", err)
			}
			h.MaxLag = caddy.Duration(dur)
		default:
			return d.Errf("b2s_health: unrecognized option %q; want max_lag", d.Val())
		}
	}
	return nil
}

// parseIsolate sets up the handler from Caddyfile tokens:
//
//	b2s_isolate [<matcher>] {
//		allow_cookies <names...>
//		sandbox on|off
//	}
func parseIsolate(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	iso := new(Isolate)
	return iso, iso.UnmarshalCaddyfile(h.Dispenser)
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens (see
// parseIsolate). allow_cookies may be given several times; the names add
// up.
func (iso *Isolate) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "allow_cookies":
			names := d.RemainingArgs()
			if len(names) == 0 {
				return d.Err("b2s_isolate: allow_cookies needs at least one cookie name, e.g. allow_cookies adnet_uid")
			}
			for _, n := range names {
				if err := checkCookieName(n); err != nil {
					return d.Err(err.Error())
				}
			}
			iso.AllowCookies = append(iso.AllowCookies, names...)
		case "sandbox":
			var v string
			if !d.Args(&v) || d.NextArg() || v != "on" && v != "off" {
				return d.Err("b2s_isolate: sandbox takes on or off, e.g. sandbox off for an ad that needs the site's origin")
			}
			on := v == "on"
			iso.Sandbox = &on
		default:
			return d.Errf("b2s_isolate: unrecognized option %q; want allow_cookies or sandbox", d.Val())
		}
	}
	return nil
}

// Interface guards
var (
	_ caddyfile.Unmarshaler = (*App)(nil)
	_ caddyfile.Unmarshaler = (*Collect)(nil)
	_ caddyfile.Unmarshaler = (*Health)(nil)
	_ caddyfile.Unmarshaler = (*Isolate)(nil)
)
