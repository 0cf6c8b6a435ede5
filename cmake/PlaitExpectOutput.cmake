# cmake -DEXPECT=<regex> [-DEXIT=zero|nonzero] -P PlaitExpectOutput.cmake -- <command> [<arg>...]
# Runs the command and passes only when both hold: its output (stdout and stderr together) matches EXPECT, and its
# exit status is 0 (EXIT=zero, the default) or not 0 (EXIT=nonzero: a refusal that must say why). CTest's
# PASS_REGULAR_EXPRESSION alone ignores the exit status, so a rank that fails after printing the expected line
# would pass; plait_add_output_test (PlaitHelpers.cmake) registers tests through this script instead.
# Pitfalls: EXPECT is a CMake regex, as PASS_REGULAR_EXPRESSION's is ('.' also matches a newline); an argument of
# the command cannot hold a ';' (CMake would split it).
cmake_minimum_required(VERSION 3.25)
if(NOT DEFINED EXPECT OR EXPECT STREQUAL "")
  message(FATAL_ERROR "PlaitExpectOutput.cmake needs -DEXPECT=<regex>")
endif()
if(NOT DEFINED EXIT)
  set(EXIT zero)
endif()
if(NOT EXIT MATCHES "^(zero|nonzero)$")
  message(FATAL_ERROR "PlaitExpectOutput.cmake: EXIT is zero or nonzero, not '${EXIT}'")
endif()

set(command "")
set(after_separator FALSE)
math(EXPR last "${CMAKE_ARGC} - 1")
foreach(i RANGE 0 ${last})
  if(after_separator)
    list(APPEND command "${CMAKE_ARGV${i}}")
  elseif(CMAKE_ARGV${i} STREQUAL "--")
    set(after_separator TRUE)
  endif()
endforeach()
if(NOT command)
  message(FATAL_ERROR "PlaitExpectOutput.cmake: no command after --")
endif()

execute_process(COMMAND ${command} RESULT_VARIABLE status OUTPUT_VARIABLE output ERROR_VARIABLE output)
message("${output}")
set(problems "")
if(NOT output MATCHES "${EXPECT}")
  string(APPEND problems "\n  its output does not match '${EXPECT}'")
endif()
if(EXIT STREQUAL "zero" AND NOT status STREQUAL "0")
  string(APPEND problems "\n  it exited with '${status}', not 0")
elseif(EXIT STREQUAL "nonzero" AND status STREQUAL "0")
  string(APPEND problems "\n  it exited with 0, where it must fail")
endif()
if(problems)
  message(FATAL_ERROR "FAILED: ${problems}")
endif()
message("expected output and exit status (${status}): passed")
