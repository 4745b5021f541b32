%% SPDX-License-Identifier: BSD-2-Clause
%% Accepts TCP connections on the port of the app's env; one process per connection.
-module(kvstore_listener).
-export([start_link/0, init/1]).

start_link() ->
    proc_lib:start_link(?MODULE, init, [self()]).

init(Parent) ->
    {ok, Port} = application:get_env(kvstore, port),
    {ok, Listen} = gen_tcp:listen(Port, [list, {packet, line}, {active, false},
                                         {reuseaddr, true}]),
    register(?MODULE, self()),
    io:format("kvstore: listening on TCP port ~b~n", [Port]),
    proc_lib:init_ack(Parent, {ok, self()}),
    accept(Listen).

accept(Listen) ->
    {ok, Socket} = gen_tcp:accept(Listen),
    Pid = spawn(fun() -> receive go -> serve(Socket) end end),
    ok = gen_tcp:controlling_process(Socket, Pid),
    Pid ! go,
    accept(Listen).

serve(Socket) ->
    case gen_tcp:recv(Socket, 0) of
        {ok, Line} ->
            Reply = try kvstore_store:request(Line)
                    catch exit:_ -> "ERROR bad request; the store crashed and was restarted"
                    end,
            ok = gen_tcp:send(Socket, [Reply, $\n]),
            serve(Socket);
        {error, closed} ->
            ok
    end.
