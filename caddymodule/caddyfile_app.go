package caddymodule

import (
	"math"
	"strconv"

	"github.com/dustin/go-humanize"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"

	"github.com/b2scom/b2s-edge/logship"
)

// parseGlobal sets up the b2s app from the global options:
//
//	b2s {
//		secret <key> [<older keys>...]
//		verify_secret <key>...
//		next_secret <key> at <RFC 3339 time>
//		edge_id <name>
//		cookie_name <name>
//		cookie_max_age <duration>
//		cookie_refresh <duration>
//		geoip <path to .mmdb>
//		geoip_asn <path to .mmdb>
//		geoip_anonymous <path to .mmdb>
//		geoip_reload <interval>
//		bots <path to bot list .json>
//		spool <directory>
//		spool_max_size <size>
//		fsync <interval>|always|never
//		kafka {
//			brokers <host:port...>
//			topic <name>
//			compression none|gzip|snappy|lz4|zstd
//			batch_size <records>
//			batch_timeout <duration>
//			write_timeout <duration>
//			flush_timeout <duration>
//			tls {
//				ca <pem file>
//				cert <pem file>
//				key <pem file>
//				server_name <name>
//				insecure_skip_verify
//			}
//			sasl plain|scram-sha-256|scram-sha-512 <username> <password>
//		}
//		network {
//			sites <host or domain...>
//			link_path <path>
//			token_param <name>
//			token_ttl <duration>
//		}
//		privacy {
//			optout_path <path>
//			optin_path <path>
//			gpc on|off
//			truncate_ip [<IPv4 bits> <IPv6 bits>]
//			child_header <name>
//			member_header <name>
//			redact_params <name...>
//			anon_id on|off
//			anon_id_key <key>
//			require_consent <regions...>
//			consent_unknown require|allow
//			consent_cookie <name> [<granted pattern>]
//			consent_path <path>
//		}
//		client_limit off
//		client_limit {
//			visitor <records per second> <burst>
//			address <records per second> <burst>
//		}
//	}
func parseGlobal(d *caddyfile.Dispenser, existing any) (any, error) {
	if existing != nil {
		d.Next()
		return nil, d.Err("b2s: the global b2s block may appear only once; merge the blocks")
	}
	app := new(App)
	if err := app.UnmarshalCaddyfile(d); err != nil {
		return nil, err
	}
	return httpcaddyfile.App{Name: "b2s", Value: caddyconfig.JSON(app, nil)}, nil
}

// UnmarshalCaddyfile sets up the app from Caddyfile tokens (see parseGlobal).
func (a *App) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume option name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "secret":
			// Several lines add keys in order: the first key signs.
			keys := d.RemainingArgs()
			if len(keys) == 0 {
				return d.Err("b2s: secret needs at least one key, e.g. secret {env.B2S_SECRET}")
			}
			a.Secrets = append(a.Secrets, keys...)
		case "verify_secret":
			keys := d.RemainingArgs()
			if len(keys) == 0 {
				return d.Err("b2s: verify_secret needs at least one key, e.g. verify_secret {env.B2S_SECRET_NEXT}")
			}
			a.VerifySecrets = append(a.VerifySecrets, keys...)
		case "next_secret":
			args := d.RemainingArgs()
			if len(args) != 3 || args[1] != "at" {
				return d.Err("b2s: next_secret needs a key and its switch-over time, e.g. next_secret {env.B2S_SECRET_NEXT} at 2027-01-10T09:00:00Z")
			}
			if a.NextSecret != nil {
				return d.Err("b2s: next_secret may appear only once")
			}
			a.NextSecret = &NextSecret{Key: args[0], At: args[2]}
		case "edge_id":
			if !d.AllArgs(&a.EdgeID) {
				return d.ArgErr()
			}
		case "cookie_name":
			if !d.AllArgs(&a.CookieName) {
				return d.ArgErr()
			}
		case "cookie_max_age", "cookie_refresh":
			opt := d.Val()
			var s string
			if !d.AllArgs(&s) {
				return d.ArgErr()
			}
			dur, err := caddy.ParseDuration(s)
			if err != nil {
				return d.Errf("b2s: %s %q is not a duration; use e.g. 400d or 24h", opt, s)
			}
			if opt == "cookie_max_age" {
				a.CookieMaxAge = caddy.Duration(dur)
			} else {
				a.CookieRefresh = caddy.Duration(dur)
			}
		case "geoip":
			if !d.AllArgs(&a.GeoIP) {
				return d.ArgErr()
			}
		case "geoip_asn":
			if !d.AllArgs(&a.GeoIPASN) {
				return d.ArgErr()
			}
		case "geoip_anonymous":
			if !d.AllArgs(&a.GeoIPAnonymous) {
				return d.ArgErr()
			}
		case "geoip_reload":
			var s string
			if !d.AllArgs(&s) {
				return d.ArgErr()
			}
			dur, err := caddy.ParseDuration(s)
			if err != nil || dur < 0 {
				return d.Errf("b2s: geoip_reload %q is not a duration; use e.g. 1m, or 0 to turn checking off", s)
			}
			cd := caddy.Duration(dur)
			a.GeoIPReload = &cd
		case "bots":
			if !d.AllArgs(&a.Bots) {
				return d.ArgErr()
			}
		case "spool":
			if !d.AllArgs(&a.Spool) {
				return d.ArgErr()
			}
		case "spool_max_size":
			var s string
			if !d.AllArgs(&s) {
				return d.ArgErr()
			}
			n, err := humanize.ParseBytes(s)
			if err != nil || n == 0 || n > math.MaxInt64 {
				return d.Errf("b2s: spool_max_size %q is not a size; use e.g. 1GiB or 500MB", s)
			}
			a.SpoolMaxSize = int64(n)
		case "fsync":
			if !d.AllArgs(&a.Fsync) {
				return d.ArgErr()
			}
			if _, err := parseFsync(a.Fsync); err != nil {
				return d.Err(err.Error())
			}
		case "kafka":
			if a.Kafka == nil {
				a.Kafka = new(KafkaConfig)
			}
			if err := a.Kafka.unmarshalCaddyfile(d); err != nil {
				return err
			}
		case "network":
			if a.Network == nil {
				a.Network = new(Network)
			}
			if err := a.Network.unmarshalCaddyfile(d); err != nil {
				return err
			}
		case "privacy":
			if a.Privacy == nil {
				a.Privacy = new(Privacy)
			}
			if err := a.Privacy.unmarshalCaddyfile(d); err != nil {
				return err
			}
		case "client_limit":
			if a.ClientLimit == nil {
				a.ClientLimit = new(ClientLimit)
			}
			if err := a.ClientLimit.unmarshalCaddyfile(d); err != nil {
				return err
			}
		default:
			return d.Errf("b2s: unrecognized option %q; see the b2s block in the README", d.Val())
		}
	}
	return nil
}

func (n *Network) unmarshalCaddyfile(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		switch opt {
		case "sites":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.Err("b2s: network: sites needs at least one host or domain, e.g. sites b2s.com b2smade.com")
			}
			n.Sites = append(n.Sites, args...)
		case "link_path":
			if !d.AllArgs(&n.LinkPath) {
				return d.ArgErr()
			}
		case "token_param":
			if !d.AllArgs(&n.TokenParam) {
				return d.ArgErr()
			}
		case "token_ttl":
			var s string
			if !d.AllArgs(&s) {
				return d.ArgErr()
			}
			dur, err := caddy.ParseDuration(s)
			if err != nil || dur <= 0 {
				return d.Errf("b2s: network: token_ttl %q is not a positive duration; use e.g. 30s", s)
			}
			n.TokenTTL = caddy.Duration(dur)
		default:
			return d.Errf("b2s: network: unrecognized option %q; want sites, link_path, token_param or token_ttl", opt)
		}
	}
	return nil
}

func (p *Privacy) unmarshalCaddyfile(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		switch opt {
		case "optout_path":
			if !d.AllArgs(&p.OptOutPath) {
				return d.ArgErr()
			}
		case "optin_path":
			if !d.AllArgs(&p.OptInPath) {
				return d.ArgErr()
			}
		case "gpc":
			var s string
			if !d.AllArgs(&s) {
				return d.ArgErr()
			}
			switch s {
			case "on":
				p.GPC = nil
			case "off":
				off := false
				p.GPC = &off
			default:
				return d.Errf("b2s: privacy: gpc %q: want on or off", s)
			}
		case "truncate_ip":
			p.TruncateIP = true
			args := d.RemainingArgs()
			switch len(args) {
			case 0:
			case 2:
				v4, err4 := strconv.Atoi(args[0])
				v6, err6 := strconv.Atoi(args[1])
				if err4 != nil || err6 != nil || v4 < 1 || v4 > 32 || v6 < 1 || v6 > 128 {
					return d.Errf("b2s: privacy: truncate_ip %s %s: want the IPv4 bits (1-32) and IPv6 bits (1-128) to keep, e.g. truncate_ip 24 48", args[0], args[1])
				}
				p.IPv4Prefix, p.IPv6Prefix = v4, v6
			default:
				return d.Err("b2s: privacy: truncate_ip takes no arguments or two, the IPv4 and IPv6 bits to keep, e.g. truncate_ip 24 48")
			}
		case "child_header":
			if !d.AllArgs(&p.ChildHeader) {
				return d.ArgErr()
			}
		case "member_header":
			if !d.AllArgs(&p.MemberHeader) {
				return d.ArgErr()
			}
		case "redact_params":
			// Several lines add names; Validate checks them.
			names := d.RemainingArgs()
			if len(names) == 0 {
				return d.Err("b2s: privacy: redact_params needs at least one query parameter name, e.g. redact_params email phone token password")
			}
			p.RedactParams = append(p.RedactParams, names...)
		case "anon_id":
			var s string
			if !d.AllArgs(&s) {
				return d.ArgErr()
			}
			switch s {
			case "on":
				p.AnonID = nil
			case "off":
				off := false
				p.AnonID = &off
			default:
				return d.Errf("b2s: privacy: anon_id %q: want on or off", s)
			}
		case "anon_id_key":
			// Not ArgErr: it would quote the key.
			args := d.RemainingArgs()
			if len(args) != 1 {
				return d.Err("b2s: privacy: anon_id_key needs one key of 32 or more bytes, e.g. anon_id_key {env.B2S_ANON_KEY}")
			}
			p.AnonIDKey = args[0]
		// Consent regions (consent_region.go); checked in Validate.
		case "require_consent":
			regions := d.RemainingArgs()
			if len(regions) == 0 {
				return d.Err("b2s: privacy: require_consent needs at least one region, e.g. require_consent eu cn")
			}
			p.RequireConsent = append(p.RequireConsent, regions...)
		case "consent_unknown":
			if !d.AllArgs(&p.ConsentUnknown) {
				return d.Err("b2s: privacy: consent_unknown takes require or allow")
			}
		case "consent_cookie":
			args := d.RemainingArgs()
			if len(args) < 1 || len(args) > 2 {
				return d.Err("b2s: privacy: consent_cookie takes the consent platform's cookie name and, optionally, the pattern of its granted value, e.g. consent_cookie CookieConsent statistics:true")
			}
			p.ConsentCookie = args[0]
			if len(args) == 2 {
				p.ConsentGranted = args[1]
			}
		case "consent_path":
			if !d.AllArgs(&p.ConsentPath) {
				return d.ArgErr()
			}
		default:
			return d.Errf("b2s: privacy: unrecognized option %q; want optout_path, optin_path, gpc, truncate_ip, child_header, member_header, redact_params, anon_id, anon_id_key, require_consent, consent_unknown, consent_cookie or consent_path", opt)
		}
	}
	return nil
}

func (k *KafkaConfig) unmarshalCaddyfile(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		switch opt {
		case "brokers":
			k.Brokers = append(k.Brokers, d.RemainingArgs()...)
			if len(k.Brokers) == 0 {
				return d.Err("b2s: kafka: brokers needs at least one host:port")
			}
		case "topic":
			if !d.AllArgs(&k.Topic) {
				return d.ArgErr()
			}
		case "compression":
			if !d.AllArgs(&k.Compression) {
				return d.ArgErr()
			}
		case "batch_size":
			var s string
			if !d.AllArgs(&s) {
				return d.ArgErr()
			}
			n, err := strconv.Atoi(s)
			if err != nil || n <= 0 {
				return d.Errf("b2s: kafka: batch_size must be a positive number of records, got %q", s)
			}
			k.BatchSize = n
		case "batch_timeout", "write_timeout", "flush_timeout":
			var s string
			if !d.AllArgs(&s) {
				return d.ArgErr()
			}
			dur, err := caddy.ParseDuration(s)
			if err != nil {
				return d.Errf("b2s: kafka: %s %q is not a duration; use e.g. 10s", opt, s)
			}
			switch opt {
			case "batch_timeout":
				k.BatchTimeout = caddy.Duration(dur)
			case "write_timeout":
				k.WriteTimeout = caddy.Duration(dur)
			default:
				k.FlushTimeout = caddy.Duration(dur)
			}
		case "tls":
			if d.NextArg() {
				return d.ArgErr()
			}
			if k.TLS == nil {
				k.TLS = new(KafkaTLS)
			}
			if err := k.TLS.unmarshalCaddyfile(d); err != nil {
				return err
			}
		case "sasl":
			// Not ArgErr: it would quote a token, maybe the password.
			args := d.RemainingArgs()
			if len(args) != 3 {
				return d.Err("b2s: kafka: sasl needs a mechanism, a username and a password, e.g. sasl scram-sha-512 {env.KAFKA_USERNAME} {env.KAFKA_PASSWORD}")
			}
			if _, err := logship.ParseSASLMechanism(args[0]); err != nil {
				return d.Errf("b2s: kafka: %v", err)
			}
			k.SASL = &KafkaSASL{Mechanism: args[0], Username: args[1], Password: args[2]}
		default:
			return d.Errf("b2s: kafka: unrecognized option %q; see the kafka block in the README", opt)
		}
	}
	return nil
}

func (t *KafkaTLS) unmarshalCaddyfile(d *caddyfile.Dispenser) error {
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch opt := d.Val(); opt {
		case "ca":
			if !d.AllArgs(&t.CA) {
				return d.ArgErr()
			}
		case "cert":
			if !d.AllArgs(&t.Cert) {
				return d.ArgErr()
			}
		case "key":
			if !d.AllArgs(&t.Key) {
				return d.ArgErr()
			}
		case "server_name":
			if !d.AllArgs(&t.ServerName) {
				return d.ArgErr()
			}
		case "insecure_skip_verify":
			if d.NextArg() {
				return d.ArgErr()
			}
			t.InsecureSkipVerify = true
		default:
			return d.Errf("b2s: kafka: tls: unrecognized option %q; want ca, cert, key, server_name or insecure_skip_verify", opt)
		}
	}
	if err := t.check(); err != nil {
		return d.Err(err.Error())
	}
	return nil
}

func (l *ClientLimit) unmarshalCaddyfile(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		if d.Val() != "off" || d.NextArg() {
			return d.Errf("b2s: client_limit: %q: want off, or a block with visitor and address limits", d.Val())
		}
		l.Off = true
		return nil
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		args := d.RemainingArgs()
		if opt != "visitor" && opt != "address" {
			return d.Errf("b2s: client_limit: unrecognized option %q; want visitor or address", opt)
		}
		if len(args) != 2 {
			return d.Errf("b2s: client_limit: %s takes the records per second and the burst, e.g. %s 10 600", opt, opt)
		}
		rate, errR := strconv.ParseFloat(args[0], 64)
		burst, errB := strconv.Atoi(args[1])
		if errR != nil || errB != nil {
			return d.Errf("b2s: client_limit: %s %s %s: want the records per second and the burst as numbers, e.g. %s 10 600", opt, args[0], args[1], opt)
		}
		if opt == "visitor" {
			l.VisitorRate, l.VisitorBurst = rate, burst
		} else {
			l.AddressRate, l.AddressBurst = rate, burst
		}
	}
	return nil
}
