"""The ctypes mirrors of the C structs and error enum match the headers, and
the package finds libsluice where its doc says."""

import ctypes
import json
import os
import subprocess
import sys
import unittest

from sluice import _lib
from support import child_env, need


class LayoutTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        out = subprocess.run([need("SLUICE_LAYOUT")], capture_output=True, text=True, check=True,
                             env=child_env()).stdout
        cls.c = json.loads(out)

    def check(self, cname, pytype):
        want = self.c[cname]
        self.assertEqual(ctypes.sizeof(pytype), want["size"], cname)
        names = [f[0] for f in pytype._fields_]
        self.assertEqual(names, list(want["fields"]), cname)
        for name, (off, size) in want["fields"].items():
            field = getattr(pytype, name)
            self.assertEqual((field.offset, field.size), (off, size), "%s.%s" % (cname, name))

    def test_structs(self):
        self.check("sl_policy_opts_t", _lib.PolicyOpts)
        self.check("sl_plan_req_t", _lib.PlanReq)
        self.check("sl_client_opts_t", _lib.ClientOpts)
        self.check("sl_event_t", _lib.Event)
        self.assertLess(self.c["sl_profile_t_size"], _lib.PROFILE_BUF_SIZE)

    def test_error_names(self):
        lib = _lib.load()
        self.assertEqual(len(_lib.ERROR_NAMES), self.c["sl_err_count"])
        for code, name in enumerate(_lib.ERROR_NAMES):
            self.assertEqual(lib.sl_errname(code).decode(), name)


class FindLibraryTest(unittest.TestCase):
    def run_py(self, code, env):
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
        return r.returncode, r.stdout.strip(), r.stderr

    def test_next_to_the_package(self):
        pkg = need("SLUICE_PYTHON_PACKAGE")
        env = dict(os.environ)
        env.pop("SLUICE_LIB", None)
        env["PYTHONPATH"] = os.path.dirname(pkg)
        rc, out, err = self.run_py(
            "import sluice, sluice._lib as l; l.load(); print(l.loaded_path()); print(sluice.__file__)", env
        )
        self.assertEqual(rc, 0, err)
        lib_path, init = out.splitlines()
        self.assertEqual(os.path.realpath(lib_path), os.path.realpath(os.path.join(pkg, "libsluice.so")))
        self.assertEqual(os.path.dirname(os.path.realpath(init)), os.path.realpath(pkg))

    def test_sluice_lib_must_load_when_set(self):
        env = dict(os.environ, SLUICE_LIB="/nonexistent/libsluice.so")
        rc, out, err = self.run_py("import sluice; sluice.Client('ipc:///tmp/x')", env)
        self.assertNotEqual(rc, 0)
        self.assertIn("$SLUICE_LIB", err)
        self.assertIn("/nonexistent/libsluice.so", err)
        # the pure helpers still work without the library
        rc, out, err = self.run_py("import sluice; print(sluice.padded_length(9, 4))", env)
        self.assertEqual((rc, out), (0, "16"), err)


if __name__ == "__main__":
    unittest.main()
