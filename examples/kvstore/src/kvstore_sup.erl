%% SPDX-License-Identifier: BSD-2-Clause
%% The store and the listener, each restarted on its own when it crashes.
-module(kvstore_sup).
-behaviour(supervisor).
-export([start_link/0, init/1]).

start_link() ->
    supervisor:start_link({local, ?MODULE}, ?MODULE, []).

init([]) ->
    Flags = #{strategy => one_for_one, intensity => 5, period => 10},
    Children = [
        #{id => kvstore_store, start => {kvstore_store, start_link, []}},
        #{id => kvstore_listener, start => {kvstore_listener, start_link, []}}
    ],
    {ok, {Flags, Children}}.
