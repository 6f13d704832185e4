//go:build headless

package main

import "os"

// A headless build has every command but the window: it needs no cgo,
// X11 or OpenGL, for servers.
func main() {
	os.Exit(run(os.Args[1:], stdio{os.Stdin, os.Stdout, os.Stderr}, nil))
}
