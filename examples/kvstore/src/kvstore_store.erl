%% SPDX-License-Identifier: BSD-2-Clause
%% The data: a map in memory, every write appended to a log on the FAT disk, read back
%% when the store starts (after a boot, or after a crash its supervisor restarted).
-module(kvstore_store).
-behaviour(gen_server).
-export([start_link/0, request/1]).
-export([init/1, handle_call/3, handle_cast/2]).

start_link() ->
    gen_server:start_link({local, ?MODULE}, ?MODULE, [], []).

%% One request line ("PUT k v", "GET k", "KEYS"): the reply line. Anything else crashes
%% the store, which is what its supervisor is for.
request(Line) ->
    gen_server:call(?MODULE, {request, Line}).

init([]) ->
    {ok, Dir} = application:get_env(kvstore, data_dir),
    Log = filename:join(Dir, "store.log"),
    ok = filelib:ensure_dir(Log),
    Data = maps:from_list(case file:consult(Log) of
                              {ok, Terms} -> [{K, V} || {put, K, V} <- Terms];
                              {error, enoent} -> []
                          end),
    io:format("kvstore: store up with ~b keys from ~s~n", [map_size(Data), Log]),
    {ok, {Log, Data}}.

handle_call({request, Line}, _From, {Log, Data}) ->
    case string:lexemes(string:trim(Line), " ") of
        ["PUT", Key, Value] ->
            ok = file:write_file(Log, io_lib:format("~p.~n", [{put, Key, Value}]), [append]),
            {reply, "OK", {Log, Data#{Key => Value}}};
        ["GET", Key] ->
            case Data of
                #{Key := Value} -> {reply, "VALUE " ++ Value, {Log, Data}};
                #{} -> {reply, "NOT_FOUND", {Log, Data}}
            end;
        ["KEYS"] ->
            {reply, lists:flatten(lists:join(" ", ["KEYS" | lists:sort(maps:keys(Data))])),
             {Log, Data}}
    end.

handle_cast(_Msg, State) ->
    {noreply, State}.
