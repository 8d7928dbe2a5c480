package main

// main is never run: a c-shared build needs a main package, and the C
// program that loads the library has its own main.
func main() {}
