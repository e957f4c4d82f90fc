// Command ocs is the prepaid charging engine.
//
//	ocs serve [--data DIR] [--listen ADDR] [--config FILE]
//	ocs config          print the embedded demo configuration
//	ocs vouchers generate|block   make a batch of scratch cards, block a card or batch
//	ocs check [--data DIR]        verify a stopped engine's database
//
// Everything is wired here and nowhere else: flags → configuration → storage
// → engine → HTTP → signal → ordered shutdown.
package main

import (
	"errors"
	"flag"
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
	case "vouchers":
		err = vouchers(os.Args[2:])
	case "check":
		err = check(os.Args[2:], os.Stdout)
	case "-h", "--help", "help":
		usage()
		return
	default:
		fmt.Fprintf(os.Stderr, "ocs: unknown command %q\n", os.Args[1])
		usage()
		os.Exit(2)
	}
	if errors.Is(err, flag.ErrHelp) {
		return // the flag package printed the usage: asking for it is no failure
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
      [--voucher-secret FILE] [--redeem-failures-max N] [--redeem-window DUR] [--redeem-bar DUR]
      [--transfer-min EUR] [--transfer-max EUR] [--transfer-fee EUR]
      vouchers, the redemption guard (default 5 wrong codes in 24h bar for 24h) and transfers;
      without --voucher-secret the demo secret DATA/voucher.key is used, created on first start
      (only while the database holds no scratch card: a lost secret is never replaced)
  ocs config
      print the embedded demo configuration, a starting point for --config
  ocs vouchers generate --count N --value 5|10|20 --batch ID --expiry YYYY-MM-DD --out codes.csv
      [--secret-file FILE] [--data DIR]
      make a batch of scratch cards: codes stored only as HMACs, clear codes written once to the
      new CSV (mode 0600); the secret file is 32+ random bytes: head -c 32 /dev/urandom > voucher.key
  ocs vouchers block (--serial S | --batch B) [--data DIR]
      block a card or a whole batch offline (while serving, use the ops API)
  ocs check [--data DIR]
      verify a stopped engine's database (or a backup), read-only: journals add up to balances,
      ledger totals to accounts, every scratch card, transfer and *101# payment to its journal
      legs; exit status 1 and the first violation if not
`)
}
