package main

import (
	"fmt"
	"os"
)

// cmdBench runs `reverb bench`.
func cmdBench(args []string) int {
	fmt.Fprintln(os.Stderr, "reverb bench: not built yet")
	return 2
}
