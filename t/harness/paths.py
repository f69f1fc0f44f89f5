"""Where the repository and its build output are."""

import os
import sys

# The repository root (this file is <REPO>/t/harness/paths.py).
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Directory for lua_package_cpath: `make lua-build` puts resty/acme/core.so under it.
BUILD_CPATH = os.path.join(REPO, "build", "lua")

# The native module nginx loads as require("resty.acme.core").
CORE_SO = os.path.join(BUILD_CPATH, "resty", "acme", "core.so")

# The platform choice (Debian's nginx or OPENRESTY=<prefix>), shared with scripts/ and bench/.
sys.path.insert(0, os.path.join(REPO, "scripts"))
import nginx_platform as platform  # noqa: E402
