// Command ocs is the prepaid charging engine.
//
//	ocs serve [--data DIR] [--listen ADDR] [--config FILE]
//	ocs config          print the embedded demo configuration
//
// Everything is wired here and nowhere else: flags → configuration → storage
// → engine → HTTP → signal → ordered shutdown.
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2:])
	case "config":
		err = printConfig(os.Stdout)
	case "-h", "--help", "help":
		usage()
		return
	default:
		fmt.Fprintf(os.Stderr, "ocs: unknown command %q\n", os.Args[1])
		usage()
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "ocs:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprint(os.Stderr, `usage:
  ocs serve [--data DIR] [--listen ADDR] [--config FILE]
      run the engine (defaults: --data ./data --listen 127.0.0.1:8080, demo configuration)
      env OCS_BOOTSTRAP_KEY: the ops API key (16 to 256 bytes); without it a key is made and
      printed once on the first start of a new data directory
  ocs config
      print the embedded demo configuration, a starting point for --config
`)
}
