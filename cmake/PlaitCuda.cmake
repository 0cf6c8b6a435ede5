# The Cuda backend's build: finds nvcc and the CUDA toolkit (cudart, cuBLASLt, CCCL, NCCL) and defines plait::cuda,
# the target every CUDA translation unit links. PLAIT_CUDA=OFF touches nothing CUDA; AUTO enables CUDA when nvcc is
# found (CUDACXX, CMAKE_CUDA_COMPILER, PATH, /usr/local/cuda) and a GPU is visible or CMAKE_CUDA_ARCHITECTURES is
# given; ON makes a missing toolkit an error. Sets PLAIT_HAS_CUDA. Where AUTO finds nvcc but no GPU it sets
# PLAIT_CUDA_COMPILE_CHECK instead: only the model and the Trainer on Cuda<bf16> are compiled (tests/cuda,
# plait_model_on_cuda), for PTX and without optimization, so that a host access to a device buffer still breaks the
# build of a machine without a GPU, in about half a minute of nvcc rather than the minutes of every CUDA target.
#
# Pitfalls: plait::plait is for g++ units (Debian's Thrust on the OpenMP system); a CUDA unit must see the toolkit's
# CCCL only, so nothing here puts a directory holding another thrust/ on nvcc's include path. Pass raw pointers and std
# types between g++ and nvcc units.
include_guard(GLOBAL)

set(PLAIT_HAS_CUDA FALSE)
set(PLAIT_CUDA_COMPILE_CHECK FALSE)
string(TOUPPER "${PLAIT_CUDA}" _plait_cuda_mode)
if(_plait_cuda_mode STREQUAL "OFF")
  return()
endif()

# Where is nvcc? CMake's own search only looks on PATH, and /usr/local/cuda/bin usually is not.
if(NOT CMAKE_CUDA_COMPILER)
  if(DEFINED ENV{CUDACXX} AND EXISTS "$ENV{CUDACXX}")
    set(_plait_nvcc "$ENV{CUDACXX}")
  else()
    find_program(PLAIT_NVCC_EXECUTABLE nvcc HINTS ENV CUDA_HOME ENV CUDA_PATH PATH_SUFFIXES bin
      PATHS /usr/local/cuda/bin)
    set(_plait_nvcc "${PLAIT_NVCC_EXECUTABLE}")
  endif()
  if(_plait_nvcc)
    set(CMAKE_CUDA_COMPILER "${_plait_nvcc}" CACHE FILEPATH "The CUDA compiler (nvcc)")
  endif()
endif()
if(NOT CMAKE_CUDA_COMPILER)
  if(_plait_cuda_mode STREQUAL "ON")
    message(FATAL_ERROR "PLAIT_CUDA=ON but no nvcc was found: set CUDACXX or CMAKE_CUDA_COMPILER to the toolkit's nvcc, "
                        "or configure with -DPLAIT_CUDA=AUTO to build without CUDA.")
  endif()
  message(STATUS "plait: no CUDA compiler found, building the Host backend only (PLAIT_CUDA=${PLAIT_CUDA})")
  return()
endif()

# Unless given (the cuda and gpu presets give them): the architectures of the GPUs this machine has. Where it has
# none, AUTO builds the compile check alone: nothing could run the CUDA targets there, and compiling them all took
# minutes of CI's 2 cores (the cuda preset, or -DPLAIT_CUDA=ON, builds them without a GPU, for sm_90 unless told
# otherwise). Set before enable_language so CMake's compiler default (an old arch) never applies.
if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES OR CMAKE_CUDA_ARCHITECTURES STREQUAL "")
  set(_plait_archs "")
  find_program(_plait_nvidia_smi nvidia-smi)
  if(_plait_nvidia_smi)
    execute_process(COMMAND ${_plait_nvidia_smi} --query-gpu=compute_cap --format=csv,noheader
                    OUTPUT_VARIABLE _plait_caps RESULT_VARIABLE _plait_smi_result ERROR_QUIET)
    if(_plait_smi_result EQUAL 0)
      string(REGEX MATCHALL "[0-9]+\\.[0-9]+" _plait_caps "${_plait_caps}")
      foreach(cap ${_plait_caps})
        string(REPLACE "." "" arch "${cap}")
        list(APPEND _plait_archs ${arch})
      endforeach()
      list(REMOVE_DUPLICATES _plait_archs)
    endif()
  endif()
  if(NOT _plait_archs)
    if(_plait_cuda_mode STREQUAL "AUTO")
      message(STATUS "plait: nvcc found but no GPU visible: the Host backend, and the model on Cuda<bf16> compiled "
                     "as a check (PLAIT_CUDA=AUTO); -DPLAIT_CUDA=ON or the cuda preset builds every CUDA target")
      set(PLAIT_CUDA_COMPILE_CHECK TRUE)
      set(_plait_archs 90-virtual)  # PTX only: ptxas, most of nvcc's time, has nothing to check here
    else()
      set(_plait_archs 90)
    endif()
  endif()
  if(PLAIT_CUDA_COMPILE_CHECK)
    set(CMAKE_CUDA_ARCHITECTURES "${_plait_archs}")  # not cached: a GPU seen at the next configure gets its own
  else()
    set(CMAKE_CUDA_ARCHITECTURES "${_plait_archs}" CACHE STRING "CUDA architectures to build for")
  endif()
endif()
enable_language(CUDA)
if(PLAIT_CUDA_COMPILE_CHECK)  # what is checked is the host code's types, not its speed: nvcc's host pass at -O0
  foreach(config RELEASE RELWITHDEBINFO MINSIZEREL)
    set(CMAKE_CUDA_FLAGS_${config} "-DNDEBUG")
  endforeach()
endif()

# CMake 3.25 knows no C++20 flag for nvcc: without these, cuda_std_20 is an error.
if(CMAKE_VERSION VERSION_LESS 3.26 AND CMAKE_CUDA_COMPILER_ID STREQUAL "NVIDIA")
  set(CMAKE_CUDA20_STANDARD_COMPILE_OPTION "-std=c++20")
  set(CMAKE_CUDA20_EXTENSION_COMPILE_OPTION "-std=c++20")
  if(NOT "cuda_std_20" IN_LIST CMAKE_CUDA_COMPILE_FEATURES)
    list(APPEND CMAKE_CUDA_COMPILE_FEATURES cuda_std_20)
    set(CMAKE_CUDA20_COMPILE_FEATURES cuda_std_20)
  endif()
endif()

find_package(CUDAToolkit REQUIRED)
# CCCL and NCCL, looked up once. Missing, they are an error, except for the compile check of a machine without a GPU,
# which is skipped (that machine built the Host backend before, and still does).
find_package(CCCL CONFIG QUIET HINTS ${CUDAToolkit_LIBRARY_DIR}/cmake/cccl)
if(NOT TARGET plait::nccl)
  find_library(PLAIT_NCCL_LIBRARY nccl HINTS ${CUDAToolkit_LIBRARY_DIR} ENV NCCL_HOME PATH_SUFFIXES lib lib64)
  find_path(PLAIT_NCCL_INCLUDE_DIR nccl.h HINTS ${CUDAToolkit_INCLUDE_DIRS} ENV NCCL_HOME PATH_SUFFIXES include)
endif()
set(_plait_cuda_missing "")
if(NOT CCCL_FOUND)
  list(APPEND _plait_cuda_missing "CCCL (the toolkit's lib/cmake/cccl)")
endif()
if(NOT TARGET plait::nccl AND (NOT PLAIT_NCCL_LIBRARY OR NOT PLAIT_NCCL_INCLUDE_DIR))
  list(APPEND _plait_cuda_missing "NCCL (nccl.h and libnccl)")
endif()
if(_plait_cuda_missing)
  list(JOIN _plait_cuda_missing " and " _plait_cuda_missing)
  if(PLAIT_CUDA_COMPILE_CHECK)
    message(STATUS "plait: the CUDA toolkit here lacks ${_plait_cuda_missing}: building the Host backend only, "
                   "without the CUDA compile check")
    set(PLAIT_CUDA_COMPILE_CHECK FALSE)
    return()
  endif()
  message(FATAL_ERROR "plait's Cuda backend needs ${_plait_cuda_missing}: install it beside the CUDA toolkit (NCCL: "
                      "or set NCCL_HOME), or configure with -DPLAIT_CUDA=OFF.")
endif()
if(NOT TARGET plait::nccl)
  add_library(plait::nccl SHARED IMPORTED)
  set_target_properties(plait::nccl PROPERTIES
    IMPORTED_LOCATION ${PLAIT_NCCL_LIBRARY}
    INTERFACE_INCLUDE_DIRECTORIES ${PLAIT_NCCL_INCLUDE_DIR})
endif()

# plait::cuda: what a CUDA unit links (and the g++ units of the same executable). The Thrust system is chosen per
# language: plait::plait's THRUST_DEVICE_SYSTEM=OMP applies to C++ units only, and here CCCL (its headers and
# THRUST_DEVICE_SYSTEM=CUDA) to CUDA units only. CCCL::CCCL itself is not linked: its Thrust target defines the CUDA
# system for every language, which would break a g++ unit using Debian's Thrust on OpenMP.
if(NOT TARGET plait_cuda)
  get_target_property(PLAIT_CCCL_INCLUDE_DIRS CCCL::CUB INTERFACE_INCLUDE_DIRECTORIES)
  add_library(plait_cuda INTERFACE)
  add_library(plait::cuda ALIAS plait_cuda)
  target_compile_features(plait_cuda INTERFACE cuda_std_20)
  target_include_directories(plait_cuda SYSTEM INTERFACE $<$<COMPILE_LANGUAGE:CUDA>:${PLAIT_CCCL_INCLUDE_DIRS}>)
  target_compile_definitions(plait_cuda INTERFACE
    $<$<COMPILE_LANGUAGE:CUDA>:THRUST_DEVICE_SYSTEM=THRUST_DEVICE_SYSTEM_CUDA>)
  target_link_libraries(plait_cuda INTERFACE plait::plait CUDA::cudart CUDA::cublasLt plait::nccl)
  target_compile_options(plait_cuda INTERFACE
    $<$<COMPILE_LANGUAGE:CUDA>:--expt-relaxed-constexpr --extended-lambda>)
endif()

if(PLAIT_CUDA_COMPILE_CHECK)
  message(STATUS "plait: CUDA ${CUDAToolkit_VERSION} (${CMAKE_CUDA_COMPILER}): compile check only, PTX for "
                 "${CMAKE_CUDA_ARCHITECTURES}")
  return()
endif()
set(PLAIT_HAS_CUDA TRUE)

# The GPU benchmarks. (Added from here because bench/CMakeLists.txt belongs to the Host build; it may take this over
# with add_subdirectory(cuda) when PLAIT_HAS_CUDA, and this block then goes.)
if(PLAIT_BUILD_BENCH AND EXISTS ${PROJECT_SOURCE_DIR}/bench/cuda/CMakeLists.txt)
  add_subdirectory(${PROJECT_SOURCE_DIR}/bench/cuda ${PROJECT_BINARY_DIR}/bench/cuda)
endif()
message(STATUS "plait: CUDA ${CUDAToolkit_VERSION} (${CMAKE_CUDA_COMPILER}), architectures ${CMAKE_CUDA_ARCHITECTURES}")
