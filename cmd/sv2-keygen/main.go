// Command sv2-keygen creates a Stratum V2 authority key pair in SRI's string
// formats: the public key that clients pin (authority_public_key,
// tp_authority_public_key) and the secret key a server signs its
// certificates with (authority_secret_key).
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/sv2kit/sv2kit/sv2/noise"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "sv2-keygen:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("sv2-keygen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "", "write the secret key to this `path` (created with mode 0600, never overwritten) instead of printing it")
	fs.Usage = func() {
		fmt.Fprintf(stderr, `Usage: sv2-keygen [-out path]

Generates a new Stratum V2 authority key pair and prints it as TOML lines:

  authority_public_key = "…"   # give this to clients (tp_authority_public_key, authority_pubkey)
  authority_secret_key = "…"   # keep this on the server

With -out, the secret key goes to a 0600 file and only the public key is printed.

Flags:
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() != 0 {
		fs.Usage()
		return fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	key, err := noise.GenerateKey(nil)
	if err != nil {
		return err
	}
	pub := noise.EncodeAuthorityPublicKey(noise.PublicKey(key))
	if *out != "" {
		if err := noise.WriteKeyFile(*out, key); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "authority_public_key = %q\n", pub)
		fmt.Fprintf(stderr, "secret key written to %s\n", *out)
		return nil
	}
	fmt.Fprintf(stdout, "authority_public_key = %q\nauthority_secret_key = %q\n", pub, noise.EncodeSecretKey(key))
	return nil
}
