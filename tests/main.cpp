// The Catch2 main shared by the single-process test executables (compiled once).
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
