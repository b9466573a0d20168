"""TSP on a real Lua: a sandboxed Lua 5.4 (``lupa``) with an instrument's objects as proxies.

The instrument (the *host*, :class:`TspHost`) owns every object TSP names; Lua sees each
one as a proxy table whose fields and functions call back into the host by path
(``"smua.source.leveli"``, ``"trigger.blender.1.stimulus.2"``): reading a field asks the
host (:meth:`TspHost.tsp_index`), assigning one (:meth:`TspHost.tsp_assign`) and calling one
(:meth:`TspHost.tsp_call`) too. A proxy passed to a host function (a reading buffer to
``smua.measure.v(buf)``, ``printbuffer``) arrives as a :class:`Ref` with its path; a Lua
table of numbers arrives as a list.

Errors, as the 2600B reports them (Series 2600B Reference Manual, "Error effects on
scripts"): a chunk that does not compile is not run at all (-285, TSP syntax error); a Lua
run-time error aborts the chunk there (-286, TSP runtime error; what ran before stays
done); a host function raises :class:`ParameterError` for a refused setting, which queues
the instrument's code and lets the script go on with the setting unchanged.

Sandbox: no ``os``, ``io``, ``require``, ``package``, ``debug``, ``dofile``, ``loadfile``,
``string.dump`` nor lupa's ``python`` module; ``load`` compiles text only, into the
instrument's globals; Python objects never reach Lua (the host only returns numbers,
strings, booleans and nil), and lupa's attribute access is refused anyway. A chunk may use
at most LUA_MEMORY_BYTES of Lua memory and INSTRUCTION_BUDGET Lua instructions (the
instrument would run an endless loop until aborted; the simulator ends it with -286 so the
server stays responsive).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import lupa.lua54 as lua54

log = logging.getLogger(__name__)
LUA_MEMORY_BYTES = 64 << 20
INSTRUCTION_BUDGET = 50_000_000
_HOOK_EVERY = 100_000
REF_MARK = "\x01ref:"

SYNTAX_ERROR = -285
RUNTIME_ERROR = -286


class ParameterError(Exception):
    """A refused setting: ``code`` and ``message`` go to the error queue, the script goes on."""

    def __init__(self, code: int, message: str):
        super().__init__(code, message)
        self.code = code
        self.message = message


class TspRuntimeError(Exception):
    """A host function failed the way a Lua run-time error does (-286, the chunk ends)."""


@dataclass(frozen=True)
class Ref:
    """A proxy passed back to the host: the path of the object it stands for."""

    path: tuple[str, ...]


@dataclass(frozen=True)
class Opaque:
    """A Lua value the host cannot use (a function, a nested table): its Lua type."""

    lua_type: str


class TspHost(Protocol):
    """What the runtime needs from the instrument."""

    def tsp_index(self, path: tuple[str, ...]) -> tuple[str, Any]:
        """("node", None), ("func", None), ("value", v) or ("nil", None) for ``path``."""
        ...

    def tsp_assign(self, path: tuple[str, ...], value: Any) -> None: ...

    def tsp_call(self, path: tuple[str, ...], args: list[Any]) -> tuple[Any, ...]: ...

    def tsp_error(self, code: int, message: str) -> None: ...


_PRELUDE = r"""
local host_index, host_assign, host_call, host_budget, root_objects, root_functions = ...
local G = _G
local load, xpcall, error, tostring, type, select = load, xpcall, error, tostring, type, select
local setmetatable, pack, unpack = setmetatable, table.pack, table.unpack
local mathtype, floor, tointeger = math.type, math.floor, math.tointeger
local sethook = debug.sethook
local REF = "\1ref:"
local paths = setmetatable({}, {__mode = "k"})

local function key(k)
  if mathtype(k) == "float" and k == floor(k) then k = tointeger(k) end
  return tostring(k)
end

local function refs(...)
  local args = pack(...)
  for i = 1, args.n do
    local p = paths[args[i]]
    if p then args[i] = REF .. p end
  end
  return args
end

local function call(path, ...)
  local args = refs(...)
  local r = pack(host_call(path, unpack(args, 1, args.n)))
  if r[1] ~= true then error(r[2], 3) end
  return unpack(r, 2, r.n)
end

local make
function make(path)
  local children = {}
  local proxy = {}
  paths[proxy] = path
  return setmetatable(proxy, {
    __index = function(_, k)
      local p = path .. "." .. key(k)
      local kind, value = host_index(p)
      if kind == "node" then
        local child = children[p]
        if not child then child = make(p); children[p] = child end
        return child
      elseif kind == "func" then
        return function(...) local r = pack(call(p, ...)); return unpack(r, 1, r.n) end
      elseif kind == "value" then
        return value
      elseif kind == "error" then
        error(value, 2)
      end
      return nil
    end,
    __newindex = function(_, k, v)
      local p = paths[v]
      if p then v = REF .. p end
      local ok, msg = host_assign(path .. "." .. key(k), v)
      if not ok then error(msg, 2) end
    end,
    __len = function()
      local kind, value = host_index(path .. ".#")
      if kind == "value" then return value end
      return 0
    end,
  })
end

for _, name in ipairs(root_objects) do G[name] = make(name) end
for _, name in ipairs(root_functions) do
  G[name] = function(...) local r = pack(call(name, ...)); return unpack(r, 1, r.n) end
end
G.print = function(...)
  local n = select("#", ...)
  local out = {}
  for i = 1, n do
    local v = select(i, ...)
    if type(v) == "number" or type(v) == "string" then out[i] = v else out[i] = tostring(v) end
  end
  local r = pack(call("print", unpack(out, 1, n)))
end
G.load = function(chunk, name, _, env)
  if type(chunk) ~= "string" then error("load: only text chunks", 2) end
  return load(chunk, name, "t", env or G)
end
for _, name in ipairs({"os", "io", "require", "package", "debug", "dofile", "loadfile",
                       "python", "collectgarbage"}) do
  G[name] = nil
end
string.dump = nil

local function hook()
  if host_budget() then error("script exceeded the simulator's instruction budget", 0) end
end

local function compile(src, name)
  local fn, err = load(src, "=" .. name, "t", G)
  return fn, err
end

local function run(fn)
  sethook(hook, "", HOOK_EVERY)
  local ok, err = xpcall(fn, function(m) return tostring(m) end)
  sethook()
  if not ok then return false, err end
  return true, nil
end

local function script(name, fn, src)
  local s = setmetatable({name = name, source = src, run = fn},
                         {__call = function() return fn() end})
  if name ~= "" then G[name] = s end
  return s
end

return compile, run, script, make
""".replace("HOOK_EVERY", str(_HOOK_EVERY))

_LINE = re.compile(r"^(?:[^:]*):(\d+): ?(.*)$", re.DOTALL)


def _located(kind: str, message: str) -> str:
    """"TSP Syntax error at line 3: ..." from Lua's "name:3: ..."."""
    m = _LINE.match(message)
    if m:
        return f"TSP {kind} error at line {m.group(1)}: {m.group(2)}"
    return f"TSP {kind} error: {message}"


class TspRuntime:
    """One sandboxed Lua state serving ``host``; objects and functions named at the root.

    ``root_objects``: global names that are proxies (``smua``, ``localnode``, ...);
    ``root_functions``: global functions the host implements (``delay``, ``printbuffer``,
    ``print``, ...; ``print`` must be one of them).
    """

    def __init__(self, host: TspHost, root_objects: Sequence[str],
                 root_functions: Sequence[str]):
        self._host = host
        self._steps = 0
        self._lua = lua54.LuaRuntime(
            register_eval=False,
            register_builtins=False,
            unpack_returned_tuples=True,
            max_memory=LUA_MEMORY_BYTES,
            attribute_filter=self._no_attributes,
        )
        table = self._lua.table_from
        prelude = self._lua.execute(_PRELUDE,
                                    self._index, self._assign, self._call, self._budget,
                                    table(list(root_objects)), table(list(root_functions)))
        self._compile, self._run, self._script, self._make = prelude

    @staticmethod
    def _no_attributes(obj: Any, name: str, is_setting: bool) -> str:
        raise AttributeError("Python attributes are not accessible from TSP")

    # -- callbacks from Lua ------------------------------------------------------------
    def _budget(self) -> bool:
        self._steps += _HOOK_EVERY
        return self._steps > INSTRUCTION_BUDGET

    def _index(self, path: str) -> tuple[str, Any]:
        try:
            return self._host.tsp_index(tuple(path.split(".")))
        except TspRuntimeError as exc:
            return "error", str(exc)
        except Exception as exc:  # noqa: BLE001 - a simulator bug must not kill the server
            log.exception("TSP index of %r failed", path)
            return "error", f"simulator error: {exc}"

    def _assign(self, path: str, value: Any) -> tuple[bool, str | None]:
        try:
            self._host.tsp_assign(tuple(path.split(".")), self._py(value))
        except ParameterError as exc:
            self._host.tsp_error(exc.code, exc.message)
        except TspRuntimeError as exc:
            return False, str(exc)
        except Exception as exc:  # noqa: BLE001 - a simulator bug must not kill the server
            log.exception("TSP assignment to %r failed", path)
            return False, f"simulator error: {exc}"
        return True, None

    def _call(self, path: str, *args: Any) -> tuple[Any, ...]:
        try:
            out = self._host.tsp_call(tuple(path.split(".")), [self._py(a) for a in args])
        except ParameterError as exc:
            self._host.tsp_error(exc.code, exc.message)
            return (True,)
        except TspRuntimeError as exc:
            return False, str(exc)
        except Exception as exc:  # noqa: BLE001 - a simulator bug must not kill the server
            log.exception("TSP call of %r failed", path)
            return False, f"simulator error: {exc}"
        return (True, *out)

    def _py(self, value: Any, nested: bool = False) -> Any:
        """A Lua value as the host sees it: Ref for proxies, lists for (array) tables; a
        table inside a table stays opaque (no TSP function takes one)."""
        if isinstance(value, str) and value.startswith(REF_MARK):
            return Ref(tuple(value[len(REF_MARK):].split(".")))
        if lua54.lua_type(value) == "table":
            if nested:
                return Opaque("table")
            return [self._py(value[i], nested=True) for i in range(1, len(value) + 1)]
        if lua54.lua_type(value) is not None:
            return Opaque(lua54.lua_type(value))  # functions, threads: opaque to the host
        return value

    # -- running chunks ----------------------------------------------------------------
    def execute(self, source: str, name: str = "TSP") -> bool:
        """Compile and run one chunk; False (the error queued with the host) if it failed."""
        fn = self.compile(source, name)
        return fn is not None and self.run(fn)

    def compile(self, source: str, name: str = "TSP") -> Any | None:
        """The compiled chunk, or None with -285 queued."""
        try:
            fn, err = self._compile(source, name)
        except lua54.LuaError as exc:  # out of memory while compiling
            self._host.tsp_error(SYNTAX_ERROR, _located("Syntax", str(exc)))
            return None
        if fn is None:
            self._host.tsp_error(SYNTAX_ERROR, _located("Syntax", str(err)))
            return None
        return fn

    def run(self, fn: Any) -> bool:
        """Run a compiled chunk; False with -286 queued if it raised."""
        self._steps = 0
        try:
            ok, err = self._run(fn)
        except lua54.LuaError as exc:  # memory exhausted inside the error handler
            ok, err = False, str(exc) or "not enough memory"
        if not ok:
            self._host.tsp_error(RUNTIME_ERROR, _located("Runtime", str(err)))
            return False
        return True

    def proxy(self, path: str) -> Any:
        """A new proxy for the host object at ``path`` (a buffer made by a script)."""
        return self._make(path)

    def define_script(self, name: str, fn: Any, source: str) -> None:
        """A named script object (``name()`` / ``name.run()``) as a global."""
        self._script(name, fn, source)
