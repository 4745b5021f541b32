%% SPDX-License-Identifier: BSD-2-Clause
-module(kvstore_app).
-behaviour(application).
-export([start/2, stop/1]).

start(_Type, _Args) ->
    kvstore_sup:start_link().

stop(_State) ->
    ok.
