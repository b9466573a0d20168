"""TSP (Test Script Processor) pieces of the simulated Keithley 2600B.

:mod:`simulators.tsp.runtime` runs TSP on a real, sandboxed Lua 5.4 (``lupa``) with an
instrument's objects exposed as proxies; :mod:`simulators.tsp.objects` is that object model
and the instrument's argument checks; :mod:`simulators.tsp.smu` one SMU channel;
:mod:`simulators.tsp.buffers` its reading buffers; :mod:`simulators.tsp.timing` the 2602B's
datasheet time model. The instrument itself is :mod:`simulators.keithley2600`.
"""
