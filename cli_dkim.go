package main

import (
	"context"
	"fmt"
	"time"

	"postroom/engine"
	"postroom/engine/dkim"
)

func cmdDKIM(args []string, std stdio) error {
	c := newCommand("dkim", "dkim generate DOMAIN [--selector S] [--algo rsa2048|ed25519] | dkim dns DOMAIN | dkim check DOMAIN", std)
	selector := c.fs.String("selector", "", "generate: the selector (default: pr + year and month)")
	algo := c.fs.String("algo", "rsa2048", "generate: rsa2048 (understood everywhere) or ed25519")
	report := c.fs.String("report", "", "dns: where DMARC reports go (default postmaster@DOMAIN)")
	pos, err := c.parse(args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return &usageError{"usage: dkim generate|dns|check DOMAIN"}
	}
	sub, domain := pos[0], pos[1]
	switch sub {
	case "generate", "dns", "check":
	default:
		return &usageError{fmt.Sprintf("unknown dkim subcommand %q", sub)}
	}
	if *algo != string(dkim.AlgorithmRSA2048) && *algo != string(dkim.AlgorithmEd25519) {
		return &usageError{fmt.Sprintf("unknown --algo %q: use rsa2048 or ed25519", *algo)}
	}
	ctx := context.Background()
	st, err := c.openStore(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	eng := engine.New(engine.Options{Store: st})
	if err := eng.Load(ctx); err != nil {
		return err
	}
	switch sub {
	case "generate":
		k, err := eng.GenerateDKIM(ctx, domain, *selector, dkim.Algorithm(*algo))
		if err != nil {
			return err
		}
		fmt.Fprintf(std.out, "Created a %s DKIM key for %s with selector %s.\nMail from %s is signed with it from now on. Publish these DNS records:\n\n", k.Algorithm, k.Domain, k.Selector, k.Domain)
		return printRecords(ctx, eng, std, domain, *report)
	case "dns":
		return printRecords(ctx, eng, std, domain, *report)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	checks, err := eng.CheckDNS(ctx, domain)
	if err != nil {
		return err
	}
	failed := 0
	for _, ch := range checks {
		mark := "OK     "
		if !ch.OK {
			mark = "PROBLEM"
			failed++
		}
		fmt.Fprintf(std.out, "%s  %-5s  %s\n", mark, ch.Record, ch.Message)
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d DNS records need attention", failed, len(checks))
	}
	return nil
}

func printRecords(ctx context.Context, eng *engine.Engine, std stdio, domain, report string) error {
	records, err := eng.DNSRecords(ctx, domain, report)
	if err != nil {
		return err
	}
	fmt.Fprint(std.out, dkim.FormatZone(records))
	return nil
}
