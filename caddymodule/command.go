package caddymodule

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/b2scom/b2s-edge/mailink"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "b2s-link",
		Usage: "--origin <https://host> --campaign <name> --member <id> [--to <url>...] [--child] [--ttl <duration>] [--config <path> [--adapter <name>]] [--eml <file> --from <addr> --rcpt <addr> [--subject <text>]] [--json]",
		Short: "Makes the sealed links of one mail to one recipient",
		Long: `
Makes the links of b2s.com's own mail for one recipient: the open pixel,
a click URL for each --to destination and the one-click unsubscribe URL
(for List-Unsubscribe with List-Unsubscribe-Post: List-Unsubscribe=One-Click).
Each carries the campaign, the member ID and an expiry, sealed with a key
derived from the b2s app's secret, which is read from the config
(--config, as "caddy run" reads it, its placeholders such as
{env.B2S_SECRET} resolved from this environment); the edge that loads the
same config serves them under /_b2s/mail/. A click redirects to its
--to destination and nowhere else.

--child marks a child's account: its links never record the member.
--ttl is how long the links are trusted (default 90d); an expired pixel
and click record no member, an expired unsubscribe still unsubscribes.

With --eml, writes a whole message to that file: the unsubscribe
headers, an HTML body linking each destination through its click URL,
the unsubscribe link and the pixel. Otherwise prints the URLs, one per
line, labelled, or as JSON with --json.
`,
		CobraFunc: func(cmd *cobra.Command) {
			fs := cmd.Flags()
			fs.StringP("config", "c", "", "Configuration file with the b2s app's secret (default: ./Caddyfile)")
			fs.StringP("adapter", "a", "", "Name of config adapter to apply")
			fs.String("origin", "", "Scheme and host of the site whose edge serves the links, e.g. https://www.b2s.com")
			fs.String("campaign", "", "Campaign name, 1 to 64 visible ASCII characters")
			fs.String("member", "", "Recipient's member ID, as the site sends it in X-B2S-Member")
			fs.StringArray("to", nil, "Destination of a click link (repeat for several)")
			fs.Bool("child", false, "The recipient's account is a child's: the links record no member")
			fs.String("ttl", "90d", "How long the links are trusted")
			fs.String("eml", "", "Write a whole message to this file")
			fs.String("from", "", "From address of the message (with --eml)")
			fs.String("rcpt", "", "To address of the message (with --eml)")
			fs.String("subject", "", "Subject of the message (with --eml)")
			fs.Bool("json", false, "Print the URLs as JSON")
			cmd.RunE = caddycmd.WrapCommandFuncForCobra(cmdLink)
		},
	})
}

// cmdLink is `caddy b2s-link`.
func cmdLink(fl caddycmd.Flags) (int, error) {
	sealer, err := linkSealerFromConfig(fl.String("config"), fl.String("adapter"))
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	ttl, err := caddy.ParseDuration(fl.String("ttl"))
	if err != nil || ttl <= 0 {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("b2s-link: --ttl %q is not a positive duration, e.g. 90d", fl.String("ttl"))
	}
	dests, _ := fl.GetStringArray("to")
	msg := mailink.Message{Origin: fl.String("origin"), Campaign: fl.String("campaign"), Member: fl.String("member"),
		Child: fl.Bool("child"), Destinations: dests, Issued: time.Now(), TTL: ttl}
	u, err := sealer.URLsFor(msg)
	if err != nil {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("b2s-link: %v", err)
	}
	if path := fl.String("eml"); path != "" {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
		if err != nil {
			return caddy.ExitCodeFailedStartup, fmt.Errorf("b2s-link: --eml: %v", err)
		}
		env := mailink.Envelope{From: fl.String("from"), To: fl.String("rcpt"), Subject: fl.String("subject"), Date: msg.Issued}
		err = mailink.WriteEML(f, env, u, dests)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return caddy.ExitCodeFailedStartup, fmt.Errorf("b2s-link: writing %s: %v; give --from and --rcpt as addresses", path, err)
		}
	}
	if fl.Bool("json") {
		out := struct {
			Open        string   `json:"open"`
			Unsubscribe string   `json:"unsubscribe"`
			Clicks      []string `json:"clicks"`
		}{u.Open, u.Unsubscribe, u.Clicks}
		_ = json.NewEncoder(os.Stdout).Encode(out)
		return caddy.ExitCodeSuccess, nil
	}
	fmt.Printf("open %s\nunsubscribe %s\n", u.Open, u.Unsubscribe)
	for i, c := range u.Clicks {
		fmt.Printf("click %s %s\n", c, dests[i])
	}
	return caddy.ExitCodeSuccess, nil
}

// linkSealerFromConfig loads the config as `caddy run` would and makes
// the mail link sealer from its b2s app's secrets, resolved as the app
// resolves them.
func linkSealerFromConfig(configFile, adapter string) (*mailink.Sealer, error) {
	cfg, name, _, err := caddycmd.LoadConfig(configFile, adapter)
	if err != nil {
		return nil, fmt.Errorf("b2s-link: loading config: %v", err)
	}
	if cfg == nil {
		return nil, fmt.Errorf("b2s-link: no config found; give --config with the file the edge runs")
	}
	var c struct {
		Apps struct {
			B2S *App `json:"b2s"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(cfg, &c); err != nil {
		return nil, fmt.Errorf("b2s-link: reading %s: %v", name, err)
	}
	if c.Apps.B2S == nil {
		return nil, fmt.Errorf("b2s-link: %s has no global b2s options; give --config with the file the edge runs", strings.TrimSpace(name))
	}
	keys, err := c.Apps.B2S.resolveSecrets(caddy.NewReplacer())
	if err != nil {
		return nil, fmt.Errorf("b2s-link: %v", err)
	}
	return mailink.New(keys...)
}
