%% SPDX-License-Identifier: BSD-2-Clause
-module(badstart_app).
-behaviour(application).
-export([start/2, stop/1]).

start(_Type, _Args) ->
    {error, not_today}.

stop(_State) ->
    ok.
