package caddymodule

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/b2scom/b2s-edge/beacon"
)

// Consent regions: where the site requires the visitor's consent before
// any identifier (require_consent), and how the edge learns it was given:
// the consent platform's cookie (consent_cookie) or the edge's own consent
// cookie, which the consent endpoint sets (consent_endpoint.go).

// Values of consent_unknown.
const (
	consentUnknownRequire = "require"
	consentUnknownAllow   = "allow"
)

// provisionConsent sets the consent options of pv from p, with their
// defaults; what does not parse is kept for validate to report.
func (pv *privacy) provisionConsent(p *Privacy) {
	pv.consentPath = or(p.ConsentPath, DefaultConsentPath)
	pv.regions, pv.regionsErr = beacon.ParseRegions(p.RequireConsent)
	pv.consentUnknown = or(p.ConsentUnknown, consentUnknownRequire)
	pv.consentCookie = p.ConsentCookie
	if p.ConsentCookie != "" || p.ConsentGranted != "" {
		pv.consentGranted, pv.grantedErr = regexp.Compile(or(p.ConsentGranted, DefaultConsentGranted))
	}
}

// validateConsent checks the consent options, with their defaults.
func (pv *privacy) validateConsent() error {
	if pv.regionsErr != nil {
		return fmt.Errorf("b2s: privacy: require_consent: %v; use country codes or regions, e.g. require_consent eu cn", pv.regionsErr)
	}
	switch pv.consentUnknown {
	case consentUnknownRequire, consentUnknownAllow:
	default:
		return fmt.Errorf("b2s: privacy: consent_unknown %q: want require (the default: no country, no identifier) or allow", pv.consentUnknown)
	}
	if pv.consentPath == pv.optOutPath || pv.consentPath == pv.optInPath {
		return fmt.Errorf("b2s: privacy: consent_path %q is also the opt-out or opt-in path; give it its own path, e.g. %s", pv.consentPath, DefaultConsentPath)
	}
	if pv.consentCookie != "" {
		if pv.regions.Empty() {
			return fmt.Errorf("b2s: privacy: consent_cookie %q has no effect without require_consent; add e.g. require_consent eu", pv.consentCookie)
		}
		if !validCookieName(pv.consentCookie) {
			return fmt.Errorf("b2s: privacy: consent_cookie %q is not a cookie name; give the name the consent platform sets, e.g. CookieConsent", pv.consentCookie)
		}
		for _, names := range &pv.names {
			for _, n := range names {
				if strings.EqualFold(pv.consentCookie, n) {
					return fmt.Errorf("b2s: privacy: consent_cookie %q is a cookie of the edge's own; give the name the consent platform sets", pv.consentCookie)
				}
			}
		}
	} else if pv.consentGranted != nil || pv.grantedErr != nil {
		return fmt.Errorf("b2s: privacy: consent_granted without consent_cookie; use consent_cookie <name> [<granted pattern>]")
	}
	if pv.grantedErr != nil {
		return fmt.Errorf("b2s: privacy: consent_cookie: the granted pattern is not a Go regular expression: %v", pv.grantedErr)
	}
	return nil
}

// needsConsent reports whether a visitor of country ("" for unknown)
// gets no identifier before consent.
func (pv *privacy) needsConsent(country string) bool {
	if pv.regions.Empty() {
		return false
	}
	if country == "" {
		return pv.consentUnknown != consentUnknownAllow
	}
	return pv.regions.Contains(country)
}

// consented reports whether the visitor, in a region that requires it,
// gave consent: the consent platform's cookie when it came (consent read
// it), else the edge's own consent cookie from the consent endpoint.
func (c *Collect) consented(jar *visitorCookies, now time.Time) bool {
	if jar.platformSeen {
		return jar.platformGranted
	}
	return c.consentCookieValid(jar, now)
}

// platformGranted reports whether the consent platform's cookie value v,
// percent-decoded, says granted.
func (pv *privacy) platformGranted(v string) bool {
	if strings.IndexByte(v, '%') >= 0 {
		if u, err := url.PathUnescape(v); err == nil {
			v = u
		}
	}
	return pv.consentGranted.MatchString(v)
}

// consentSettings are the consent options in force, for the fleet's
// privacy fingerprint, or nil without require_consent.
func (pv *privacy) consentSettings() any {
	if pv.regions.Empty() {
		return nil
	}
	granted := ""
	if pv.consentGranted != nil {
		granted = pv.consentGranted.String()
	}
	return struct {
		Countries                      []string
		All                            bool
		Unknown, Cookie, Granted, Path string
	}{pv.regions.Countries(), pv.regions.All(), pv.consentUnknown, pv.consentCookie, granted, pv.consentPath}
}

// logConsent logs the consent regions at load, and warns when they cannot
// work as meant: without a City or Country database no visitor has a
// country, so every one waits for consent (or, with consent_unknown
// allow, none does).
func (a *App) logConsent() {
	pv := a.privacy
	if pv.regions.Empty() {
		return
	}
	a.logger.Info("consent required before identifiers", zap.Strings("countries", pv.regions.Countries()),
		zap.Bool("all", pv.regions.All()), zap.String("unknown", pv.consentUnknown), zap.String("consent_cookie", pv.consentCookie))
	if a.geo == nil {
		a.logger.Warn("require_consent without a geoip database: no visitor's country is known, so every visitor is treated as consent_unknown says; add geoip <City or Country .mmdb>",
			zap.String("consent_unknown", pv.consentUnknown))
	}
}
