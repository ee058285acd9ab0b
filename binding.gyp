{
  "variables": {
    "lockspace_asan%": "<!(node -p \"process.env.LOCKSPACE_ASAN==='1'?1:0\")",
    "with_holder%": "<!(node -p \"process.env.LOCKSPACE_HOLDER==='0'?0:1\")",
    "with_tests%": "<!(node -p \"require('fs').existsSync('native/test/core_test.cc')?1:0\")",
    "werror%": "<!(node -p \"process.env.CI==='true'||process.env.LOCKSPACE_WERROR==='1'?1:0\")",
    "lockspace_version%": "<!(node -p \"require('fs').existsSync('package.json')?require('./package.json').version:'unknown'\")",
    # Tests only: build a copy whose lock table format differs (see native/core/shared_table.h).
    "lockspace_test_table_format%": "<!(node -p \"process.env.LOCKSPACE_TEST_TABLE_FORMAT||0\")"
  },
  "target_defaults": {
    "cflags!": ["-fno-exceptions"],
    "cflags_cc!": ["-fno-exceptions", "-std=gnu++17", "-std=gnu++1y"],
    "cflags": ["-Wall", "-Wextra", "-Wpedantic", "-fvisibility=hidden"],
    "cflags_cc": ["-std=c++17", "-fexceptions", "-Wall", "-Wextra", "-Wpedantic", "-fvisibility=hidden"],
    "defines": ["_GNU_SOURCE"],
    "conditions": [
      ["werror==1", { "cflags_cc": ["-Werror"] }],
      ["lockspace_asan==1", {
        "cflags_cc": ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-fno-sanitize-recover=undefined"],
        "defines": ["LOCKSPACE_SANITIZED"],
        "ldflags": ["-fsanitize=address,undefined"]
      }]
    ]
  },
  "targets": [
    {
      "target_name": "lockspace",
      "sources": [
        "native/core/registry.cc",
        "native/core/registry_release.cc",
        "native/core/registry_kernel_wait.cc",
        "native/core/registry_deadlock.cc",
        "native/core/registry_inspect.cc",
        "native/core/registry_record.cc",
        "native/core/holder_record.cc",
        "native/core/proc_stat.cc",
        "native/core/dir.cc",
        "native/core/idle_list.cc",
        "native/core/lock_file.cc",
        "native/core/lock_query.cc",
        "native/core/network_fs.cc",
        "native/core/kernel_wait.c",
        "native/core/shared_table.cc",
        "native/binding.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "dependencies": ["<!(node -p \"require('node-addon-api').targets\"):node_addon_api_except"],
      "defines": [
        "NAPI_VERSION=8",
        "NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS",
        "LOCKSPACE_VERSION=\"<(lockspace_version)\""
      ],
      "conditions": [
        ["lockspace_test_table_format!=0", { "defines": ["LOCKSPACE_TABLE_FORMAT=<(lockspace_test_table_format)"] }]
      ],
      "libraries": ["-ldl", "-lpthread"]
    }
  ],
  "conditions": [
    # The holder of bound sets (LockSpace#holdFor): a program of its own, no N-API, no Node. Static: it
    # maps no shared library, so each bound VM costs a few hundred KiB (README). The prebuilt binaries'
    # build leaves it out (LOCKSPACE_HOLDER=0) and links it against musl instead (scripts/build-prebuilds.js).
    ["with_holder==1", {
      "targets": [{
        "target_name": "lockspace-holder",
        "type": "executable",
        "sources": [
          "native/holder/holder.cc",
          "native/core/holder_record.cc",
          "native/core/lock_file.cc",
          "native/core/network_fs.cc",
          "native/core/proc_stat.cc"
        ],
        "libraries": ["-lpthread"],
        "conditions": [["lockspace_asan==0", { "ldflags": ["-static"] }]]
      }]
    }],
    # The C++ core test (native/test) is built in a checkout only, not from the published package.
    ["with_tests==1", {
      "targets": [{
        "target_name": "core_test",
        "type": "executable",
        "sources": [
          "native/core/registry.cc",
          "native/core/registry_release.cc",
          "native/core/registry_kernel_wait.cc",
          "native/core/registry_deadlock.cc",
          "native/core/registry_inspect.cc",
          "native/core/registry_record.cc",
          "native/core/holder_record.cc",
          "native/core/proc_stat.cc",
          "native/core/dir.cc",
          "native/core/idle_list.cc",
          "native/core/lock_file.cc",
          "native/core/lock_query.cc",
          "native/core/network_fs.cc",
          "native/core/kernel_wait.c",
          "native/test/core_test.cc",
          "native/test/deadlock_test.cc",
          "native/test/parts_test.cc",
          "native/test/support.cc",
          "native/test/wait_test.cc"
        ],
        "defines": ["LOCKSPACE_TEST_POINTS"],
        "libraries": ["-lpthread"]
      }]
    }]
  ]
}
