// Command idle is the smallest gRPC program: it links grpc-go and does
// nothing. Built with -tags xdsimport, it also imports
// google.golang.org/grpc/xds, so that the two differ in that import only.
package main

import (
	"bufio"
	"fmt"
	"os"

	_ "google.golang.org/grpc"
)

func main() {
	fmt.Println("ready")
	// Idle until the parent closes stdin.
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		fmt.Println("loaded 0")
	}
}
