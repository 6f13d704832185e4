//go:build pprof

package main

// Built only with -tags pprof (bench/profile.sh): serves
// net/http/pprof on the address in POSTROOM_PPROF so a load run can be
// profiled. Release builds never contain it.

import (
	"log"
	"net/http"
	_ "net/http/pprof"
	"os"
)

func init() {
	addr := os.Getenv("POSTROOM_PPROF")
	if addr == "" {
		return
	}
	go func() {
		log.Println("pprof:", http.ListenAndServe(addr, nil))
	}()
}
